package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// WakeKind says what a worker's wake-up subscription heard.
type WakeKind int

const (
	// WakeQueue: the queue may have tasks to fetch.
	WakeQueue WakeKind = iota
	// WakeCancel: CancelTask asked for the queue's task TaskID (PROTOCOL §8.2).
	WakeCancel
	// WakeProbe: the worker's own probe number Probe came back.
	WakeProbe
	// WakePause: PauseQueue paused the queue (PauseID); WakeResume: resumed it.
	WakePause
	WakeResume
	// WakeWindow: SetQueueWindow changed the queue's run window (Window).
	WakeWindow
	// WakeSubscribed: a (re)subscription was confirmed: messages may have
	// been missed while it was away.
	WakeSubscribed
)

// WakeEvent is one thing a wake-up subscription heard.
type WakeEvent struct {
	Kind   WakeKind
	Queue  *Queue // WakeQueue, WakeCancel
	TaskID string // WakeCancel
	Probe  uint64 // WakeProbe
	// PauseID is the pause's or resume's id (WakePause, WakeResume; 0 if it
	// is not a number).
	PauseID int64
	// Window is the queue's new run window ("" none; WakeWindow).
	Window string
}

// WakeSubscription is a worker's subscription to its queues' wake channels
// and its session's probe channel (PROTOCOL §7.10).
type WakeSubscription struct {
	ps     *redis.PubSub
	byChan map[string]*Queue
	probe  string
}

// probeChannel is session's probe channel.
func (b *Broker) probeChannel(session string) string { return b.ns + ":probe:" + session }

// SubscribeWake subscribes to the queues' wake channels and session's probe
// channel, returning once Redis confirmed every one, so that no wake-up after
// the call can be missed.
func (b *Broker) SubscribeWake(ctx context.Context, queues []*Queue, session string) (*WakeSubscription, error) {
	s := &WakeSubscription{byChan: make(map[string]*Queue, len(queues)), probe: b.probeChannel(session)}
	chans := make([]string, 0, len(queues)+1)
	for _, q := range queues {
		s.byChan[q.Channel] = q
		chans = append(chans, q.Channel)
	}
	chans = append(chans, s.probe)
	s.ps = b.rdb.Subscribe(ctx, chans...)
	for subscribed := 0; subscribed < len(chans); {
		msg, err := s.ps.Receive(ctx)
		if err != nil {
			s.ps.Close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		if _, ok := msg.(*redis.Subscription); ok {
			subscribed++
		}
	}
	return s, nil
}

// Receive waits for the next event; an error is the connection's (go-redis
// reconnects and subscribes again by itself: keep receiving).
func (s *WakeSubscription) Receive(ctx context.Context) (WakeEvent, error) {
	for {
		msg, err := s.ps.Receive(ctx)
		if err != nil {
			return WakeEvent{}, err
		}
		switch m := msg.(type) {
		case *redis.Message:
			if q := s.byChan[m.Channel]; q != nil {
				if id, ok := strings.CutPrefix(m.Payload, "c:"); ok {
					return WakeEvent{Kind: WakeCancel, Queue: q, TaskID: id}, nil
				}
				if id, ok := strings.CutPrefix(m.Payload, "P:"); ok {
					n, _ := strconv.ParseInt(id, 10, 64)
					return WakeEvent{Kind: WakePause, Queue: q, PauseID: n}, nil
				}
				if spec, ok := strings.CutPrefix(m.Payload, "W:"); ok {
					return WakeEvent{Kind: WakeWindow, Queue: q, Window: spec}, nil
				}
				if id, ok := strings.CutPrefix(m.Payload, "R:"); ok {
					n, _ := strconv.ParseInt(id, 10, 64)
					return WakeEvent{Kind: WakeResume, Queue: q, PauseID: n}, nil
				}
				return WakeEvent{Kind: WakeQueue, Queue: q}, nil
			}
			if m.Channel == s.probe {
				n, _ := strconv.ParseUint(m.Payload, 10, 64)
				return WakeEvent{Kind: WakeProbe, Probe: n}, nil
			}
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				return WakeEvent{Kind: WakeSubscribed}, nil
			}
		}
	}
}

// Close closes the subscription; a blocked Receive returns an error.
func (s *WakeSubscription) Close() error { return s.ps.Close() }

// Probe publishes probe number n on session's probe channel.
func (b *Broker) Probe(ctx context.Context, session string, n uint64) error {
	return b.rdb.Publish(ctx, b.probeChannel(session), n).Err()
}
