// Package emails defines the welcome-email task shared by the httpserver
// example, which enqueues it, and the worker example, which runs it. Both
// register it through Register, so they agree on its name, queue and options.
package emails

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
)

// TaskName and Queue are where the task lives; a worker must serve Queue.
const (
	TaskName = "send_welcome_email"
	Queue    = "emails"
)

// WelcomeArgs are the task's arguments.
type WelcomeArgs struct {
	UserID int64
	Email  string
}

// Validate reports arguments no retry could make work, so a producer can
// refuse them before enqueueing.
func (a WelcomeArgs) Validate() error {
	if a.UserID <= 0 {
		return fmt.Errorf("user id %d is not positive", a.UserID)
	}
	if _, err := mail.ParseAddress(a.Email); err != nil {
		return fmt.Errorf("email %q: %w", a.Email, err)
	}
	return nil
}

// Sender delivers one message. It must be safe for concurrent use: a worker
// runs several handlers at once.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Message is one email.
type Message struct {
	// ID is stable across retries of one task, so that a receiver can drop a
	// duplicate left by an attempt that sent and then failed.
	ID      string
	Attempt int // 1 on the first attempt
	To      string
	Subject string
	Body    string
}

// Register registers the task on app. Workers pass the Sender the handler
// delivers with; a producer, which never runs the handler, passes nil.
func Register(app *rediq.App, s Sender) *rediq.Task[WelcomeArgs, string] {
	return rediq.Register(app, TaskName, func(ctx context.Context, a WelcomeArgs) (string, error) {
		if err := a.Validate(); err != nil {
			return "", rediq.SkipRetry(err)
		}
		if s == nil {
			return "", errors.New("emails: registered without a Sender")
		}
		info, _ := rediq.CurrentTask(ctx)
		m := Message{
			ID:      string(info.ID) + "@rediq",
			Attempt: rediq.Retried(ctx) + 1,
			To:      a.Email,
			Subject: "Welcome!",
			Body:    fmt.Sprintf("Hello, user %d, and welcome aboard.", a.UserID),
		}
		if err := s.Send(ctx, m); err != nil {
			return "", fmt.Errorf("send welcome email: %w", err)
		}
		rediq.Logger(ctx).Info("welcome email sent",
			zap.Int64("user_id", a.UserID), zap.String("to", a.Email), zap.Int("attempt", m.Attempt))
		return "sent to " + a.Email, nil
	},
		rediq.Queue(Queue),
		rediq.Priority(-10), // a user is waiting for it: ahead of the queue's priority-0 tasks
		rediq.Retries(5),
		rediq.Timeout(30*time.Second),
	)
}
