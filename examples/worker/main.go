// Command worker runs the emails example's tasks with worker.Main: it takes the
// worker's flags (--help lists them) and runs until SIGINT or SIGTERM. It
// serves the "emails" queue (and "default") unless --queue or $REDIQ_QUEUES
// names others.
//
// A BeforeWorkerStartup hook opens the mail log the handler writes to, standing
// in for an SMTP connection: $MAILLOG, else rediq-maillog.txt in the temporary
// directory. If it cannot be opened the worker does not start and exits 1. An
// AfterWorkerShutdown hook closes it once every task has settled.
//
//	go run ./examples/worker
//	MAILLOG=/tmp/mail.txt go run ./examples/worker --redis-url redis://127.0.0.1:6379/0
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/examples/emails"
	"github.com/rediq/rediq/worker"
)

func main() {
	app, err := rediq.New(rediq.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	mlog := &mailLog{}
	emails.Register(app, mlog)
	app.On(rediq.BeforeWorkerStartup, func(ctx context.Context) error {
		path := os.Getenv("MAILLOG")
		if path == "" {
			path = filepath.Join(os.TempDir(), "rediq-maillog.txt")
		}
		if err := mlog.open(path); err != nil {
			return err
		}
		rediq.Logger(ctx).Info("mail log opened", zap.String("path", path))
		return nil
	})
	app.On(rediq.AfterWorkerShutdown, func(ctx context.Context) error {
		return mlog.close()
	})
	// The program's defaults; $REDIQ_QUEUES or --queue, and the other
	// variables and flags, override them.
	worker.Main(app, worker.Config{Queues: []string{emails.Queue}})
}

// mailLog is an emails.Sender that appends each message to a file. The mutex
// keeps a handler from writing while a hook opens or closes the file.
type mailLog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *mailLog) open(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open mail log: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = f.Close()
		return errors.New("mail log is already open")
	}
	l.f = f
	return nil
}

func (l *mailLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close mail log: %w", err)
	}
	return nil
}

func (l *mailLog) Send(ctx context.Context, m emails.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("mail log is not open")
	}
	_, err := fmt.Fprintf(l.f, "Message-ID: <%s>\nX-Attempt: %d\nTo: %s\nSubject: %s\n\n%s\n\n",
		m.ID, m.Attempt, m.To, m.Subject, m.Body)
	return err
}
