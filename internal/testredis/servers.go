package testredis

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A test that needs a Redis Cluster or a TLS server starts its own with the
// functions below: they are slower to start than the package's server and few
// tests need them. Each server is stopped when the test ends.

// needServer returns the path of redis-server, or skips t when it is missing
// (fails it under REDIQ_TEST_REQUIRE_REDIS=1).
func needServer(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REDIQ_TEST_REQUIRE_REDIS") == "1" {
			t.Fatal("REDIQ_TEST_REQUIRE_REDIS=1 but redis-server is not installed")
		}
		t.Skip("needs redis-server (install redis-server to run it)")
	}
	return path
}

// startProcess runs redis-server with args (which must include --dir) until t
// ends, through launch: it dies with the test binary.
func startProcess(t testing.TB, path string, args ...string) *process {
	t.Helper()
	p, err := launch(path, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return p
}

// waitListening waits until addr accepts TCP connections, or fails t. If the
// server exits first and tlsTest says its output is about TLS, it skips t.
func (p *process) waitListening(t testing.TB, addr string, tlsTest bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.exited:
			if out := p.log.String(); tlsTest && strings.Contains(strings.ToLower(out), "tls") {
				t.Skipf("redis-server would not serve TLS (built without it?): %s", out)
			}
			t.Fatalf("redis-server exited: %s", p.log.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server does not listen on %s: %v; output:\n%s", addr, err, p.log.String())
		}
	}
}

// freeTestPort returns a loopback port no one listens on, and, with bus, whose
// cluster bus port (port+10000) is free too.
func freeTestPort(t testing.TB, bus bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		lb, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l.Close()
		if err == nil {
			lb.Close()
			return port
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

var baseArgs = []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}

// StartCluster starts a Redis Cluster of three masters on loopback, each with a
// third of the slots, waits until it serves, and returns the nodes' addresses.
func StartCluster(t testing.TB) []string {
	t.Helper()
	path := needServer(t)
	ctx := context.Background()
	addrs := make([]string, 3)
	nodes := make([]*redis.Client, 3)
	for i := range addrs {
		port := freeTestPort(t, true)
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
		dir := t.TempDir()
		s := startProcess(t, path, append([]string{"--port", strconv.Itoa(port), "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--dir", dir}, baseArgs...)...)
		s.waitListening(t, addrs[i], false)
		nodes[i] = redis.NewClient(&redis.Options{Addr: addrs[i]})
		t.Cleanup(func() { nodes[i].Close() })
	}
	const slots = 16384
	for i, n := range nodes {
		first, last := i*slots/3, (i+1)*slots/3-1
		if err := n.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", addrs[i], err)
		}
		// Distinct epochs, as redis-cli --cluster create sets them, spare the
		// nodes resolving a collision first.
		if err := n.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("CLUSTER SET-CONFIG-EPOCH on %s: %v", addrs[i], err)
		}
	}
	// Every node meets every other, and again every 2 s while the cluster is
	// not formed: a MEET lost on a busy machine (seen: a node that knew two of
	// the three after 10 s) must not fail the test.
	meet := func() {
		for i, n := range nodes {
			for j, a := range addrs {
				if i == j {
					continue
				}
				host, port, _ := net.SplitHostPort(a)
				if err := n.ClusterMeet(ctx, host, port).Err(); err != nil {
					t.Fatalf("CLUSTER MEET %s: %v", a, err)
				}
			}
		}
	}
	meet()
	// A master waits 2s after its start before it reports the cluster ok.
	const within = 30 * time.Second
	deadline, again := time.Now().Add(within), time.Now().Add(2*time.Second)
	for i := 0; i < len(nodes); {
		info, err := nodes[i].ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster node %s not ready within %v: %v\n%s", addrs[i], within, err, info)
		}
		if time.Now().After(again) {
			meet()
			again = time.Now().Add(2 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addrs
}

// StartSentinel starts a Sentinel that monitors the master at masterAddr under
// the name master, and returns its address.
func StartSentinel(t testing.TB, master, masterAddr string) string {
	t.Helper()
	path := needServer(t)
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it: a file of its own
	if err := os.WriteFile(conf, []byte("sentinel monitor "+master+" "+host+" "+port+" 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sport := freeTestPort(t, false)
	addr := "127.0.0.1:" + strconv.Itoa(sport)
	s := startProcess(t, path, conf, "--sentinel", "--port", strconv.Itoa(sport), "--bind", "127.0.0.1", "--dir", dir)
	s.waitListening(t, addr, false)
	return addr
}

// TLSServer is a redis-server that takes TLS connections only, with a client
// certificate signed by the CA in CAFile.
type TLSServer struct {
	Addr string
	// CAFile holds the CA that signed the server's certificate (for 127.0.0.1
	// and localhost) and the client's.
	CAFile string
	// CertFile and KeyFile are a client certificate the server accepts.
	CertFile, KeyFile string
	// OtherCAFile holds a CA that signed nothing here.
	OtherCAFile string
}

// StartTLS starts a TLSServer. It skips t when redis-server was built without TLS.
func StartTLS(t testing.TB) TLSServer {
	t.Helper()
	path := needServer(t)
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b bytes.Buffer
		for _, bl := range blocks {
			if err := pem.Encode(&b, bl); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, caKey := newCert(t, nil, nil, "rediq test CA")
	server, serverKey := newCert(t, ca, caKey, "127.0.0.1")
	client, clientKey := newCert(t, ca, caKey, "rediq test client")
	other, _ := newCert(t, nil, nil, "another CA")
	s := TLSServer{
		CAFile:      write("ca.pem", certBlock(ca)),
		CertFile:    write("client.pem", certBlock(client)),
		KeyFile:     write("client-key.pem", keyBlock(t, clientKey)),
		OtherCAFile: write("other-ca.pem", certBlock(other)),
	}
	port := freeTestPort(t, false)
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	p := startProcess(t, path, append([]string{"--port", "0", "--tls-port", strconv.Itoa(port), "--dir", dir,
		"--tls-cert-file", write("server.pem", certBlock(server)), "--tls-key-file", write("server-key.pem", keyBlock(t, serverKey)),
		"--tls-ca-cert-file", s.CAFile, "--tls-auth-clients", "yes"}, baseArgs...)...)
	p.waitListening(t, s.Addr, true)
	return s
}

// newCert returns a certificate for name signed by parent (self-signed when
// parent is nil, as a CA).
func newCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func certBlock(c *x509.Certificate) *pem.Block {
	return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}
}

func keyBlock(t testing.TB, k *ecdsa.PrivateKey) *pem.Block {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}
