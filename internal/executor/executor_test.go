package executor

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunAndClose(t *testing.T) {
	t.Parallel()
	p := New(2)
	ran := false
	if err := p.Run(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("Run = %v, ran %v", err, ran)
	}
	// A full pool gives way to a done context.
	block := make(chan struct{})
	started := make(chan struct{}, 2)
	for range 2 {
		go p.Run(context.Background(), func() { started <- struct{}{}; <-block })
	}
	<-started
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx, func() { t.Error("ran on a full pool with a done context") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	close(block)
	p.Close()
	p.Close() // twice is fine
}
