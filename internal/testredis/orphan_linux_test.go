package testredis

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// orphanEnv makes TestOrphan run in a child test binary that starts a server
// and then dies in the way the variable names.
const orphanEnv = "REDIQ_TESTREDIS_ORPHAN"

// TestServersDieWithTheTestBinary kills a test binary in the ways a test run
// ends badly and checks that the redis-server it started went with it.
func TestServersDieWithTheTestBinary(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server installed")
	}
	tests := []struct {
		name, death string
		timeout     string // the child's -test.timeout
	}{
		{name: "SIGKILL", death: "sigkill", timeout: "30s"},
		{name: "panic", death: "panic", timeout: "30s"},
		{name: "go test -timeout", death: "timeout", timeout: "10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestOrphan$", "-test.timeout="+tt.timeout)
			// The child dies before it can remove its temporary directories;
			// have it make them in ours.
			cmd.Env = append(os.Environ(), orphanEnv+"="+tt.death, "TMPDIR="+t.TempDir())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			pids := make(chan int, 1)
			go func() {
				defer close(exited)
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if pid, ok := strings.CutPrefix(sc.Text(), "redis-server pid "); ok {
						n, _ := strconv.Atoi(pid)
						pids <- n
					}
				}
				_ = cmd.Wait()
			}()
			var pid int
			select {
			case pid = <-pids:
			case <-exited:
				t.Fatalf("the child exited without starting a server:\n%s", stderr.String())
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatal("the child did not start a server within 20s")
			}
			if tt.death == "sigkill" {
				_ = cmd.Process.Kill()
			}
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatal("the child did not die within 20s")
			}
			WaitFor(t, 5*time.Second, fmt.Sprintf("redis-server (pid %d) to die", pid), func() bool {
				return !runningRedis(pid)
			})
		})
	}
}

// runningRedis reports whether pid is a live redis-server. An orphan killed
// in a container whose init does not reap it lingers as a zombie, which
// counts as dead.
func runningRedis(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces, so look after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	return bytes.Contains(stat[:i], []byte("redis-server"))
}

// TestOrphan is the child of TestServersDieWithTheTestBinary; it does nothing
// in a normal run.
func TestOrphan(t *testing.T) {
	death := os.Getenv(orphanEnv)
	if death == "" {
		return
	}
	s := StartServer(t)
	fmt.Printf("redis-server pid %d\n", s.proc.cmd.Process.Pid)
	switch death {
	case "panic":
		// In a goroutine of its own, so that testing cannot recover it and
		// run the cleanups: the process just dies.
		go panic("testredis: dying on purpose")
	case "sigkill", "timeout":
		// Wait for the parent's SIGKILL, or for -test.timeout to end us.
	}
	time.Sleep(time.Minute)
}
