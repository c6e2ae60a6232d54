package worker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// A loop service runs from Start until Stop, which waits for it to end; Stop
// is safe twice and without a Start, and a second Start fails.
func TestLoopServiceStartStop(t *testing.T) {
	t.Parallel()
	ran, ended := make(chan struct{}), make(chan struct{})
	l := newLoop(func(_ context.Context, stop <-chan struct{}) {
		close(ran)
		<-stop
		close(ended)
	})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the service did not run")
	}
	if err := l.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	l.Stop()
	select {
	case <-ended:
	default:
		t.Fatal("Stop returned before the service ended")
	}
	l.Stop()
	newLoop(func(context.Context, <-chan struct{}) {}).Stop() // never started
}

// recorded is a service that records its starts and stops, and fails to
// start when told to.
type recorded struct {
	name string
	fail bool
	log  *[]string
}

func (r recorded) Start(context.Context) error {
	if r.fail {
		return errors.New("no")
	}
	*r.log = append(*r.log, "start "+r.name)
	return nil
}

func (r recorded) Stop() { *r.log = append(*r.log, "stop "+r.name) }

// Services start in their list's order and stop in its reverse; a failed
// start stops those already started.
func TestServicesStartInOrderStopInReverse(t *testing.T) {
	t.Parallel()
	var log []string
	list := []service{recorded{"a", false, &log}, recorded{"b", false, &log}, recorded{"c", false, &log}}
	if err := startAll(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	stopAll(list)
	if want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}; !slices.Equal(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}
	log = nil
	list = []service{recorded{"a", false, &log}, recorded{"b", false, &log}, recorded{"c", true, &log}, recorded{"d", false, &log}}
	if err := startAll(context.Background(), list); err == nil {
		t.Fatal("startAll succeeded though c failed")
	}
	if want := []string{"start a", "start b", "stop b", "stop a"}; !slices.Equal(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}
}

// Every listener hears a heartbeat; one that is busy gets one signal for
// the beats it missed, and the beat never blocks.
func TestBeatsReachEveryListener(t *testing.T) {
	t.Parallel()
	var b beats
	one, two := b.listen(), b.listen()
	b.beat()
	b.beat()
	for _, ch := range []<-chan struct{}{one, two} {
		select {
		case <-ch:
		default:
			t.Fatal("a listener did not hear the beat")
		}
		select {
		case <-ch:
			t.Fatal("a listener holds more than one beat")
		default:
		}
	}
}

// The default clock reads Config.now (a skew moves the time read) and its
// timers wait real time.
func TestRealClockReadsConfigNow(t *testing.T) {
	t.Parallel()
	skew := time.Hour
	c := realClock{now: func() time.Time { return time.Now().Add(skew) }}
	if d := c.Now().Sub(time.Now()); d < skew-time.Minute || d > skew+time.Minute {
		t.Fatalf("Now is %s ahead, want about %s", d, skew)
	}
	start := time.Now()
	<-c.NewTimer(10 * time.Millisecond).C()
	<-c.After(10 * time.Millisecond)
	if e := time.Since(start); e < 20*time.Millisecond || e > 5*time.Second {
		t.Fatalf("two 10ms waits took %s", e)
	}
	tm := stoppedTimer(c)
	select {
	case <-tm.C():
		t.Fatal("a stopped timer fired")
	case <-time.After(20 * time.Millisecond):
	}
}
