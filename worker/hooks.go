package worker

import (
	"context"
	"runtime/debug"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/core"
	"go.uber.org/zap"
)

func (w *Worker) fireWorkerHooks(ctx context.Context, e rediq.Event) error {
	for _, h := range w.hooks[e] {
		if err := safeHook(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// fireTaskHooks runs a task event's hooks; their failures are logged only.
func (w *Worker) fireTaskHooks(ctx context.Context, st *core.State, e rediq.Event) {
	for _, h := range w.hooks[e] {
		if err := safeHook(ctx, h); err != nil {
			st.Logger().Warn("hook failed", zap.Stringer("event", e), zap.Error(err))
		}
	}
}

func safeHook(ctx context.Context, h core.Hook) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &rediq.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return h(ctx)
}
