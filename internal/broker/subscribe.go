package broker

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Subscriber is one pub/sub connection whose channels are subscribed and
// unsubscribed as its user needs them. go-redis reconnects it on its own and
// subscribes its channels again; each confirmation comes as a Notice, so that
// a user who may have missed a message looks again.
type Subscriber struct {
	ps *redis.PubSub
	ch <-chan any
}

// Notice is what a Subscriber heard on a channel.
type Notice struct {
	Channel string
	// Subscribed: the confirmation of a SUBSCRIBE (a first one, or one made
	// again after a reconnect), not a message.
	Subscribed bool
}

// Subscriber opens a pub/sub connection with no channel yet. ctx is kept by
// go-redis for its reconnects: give one that outlives the calls.
func (b *Broker) Subscriber(ctx context.Context) *Subscriber {
	ps := b.rdb.Subscribe(ctx)
	// A deep buffer: a burst of finishing tasks is not dropped while the
	// reader hands the notices out.
	return &Subscriber{ps: ps, ch: ps.ChannelWithSubscriptions(redis.WithChannelSize(1000))}
}

// Subscribe sends SUBSCRIBE for the channels; their confirmations come as
// Notices.
func (s *Subscriber) Subscribe(ctx context.Context, channels ...string) error {
	return s.ps.Subscribe(ctx, channels...)
}

// Unsubscribe sends UNSUBSCRIBE for the channels.
func (s *Subscriber) Unsubscribe(ctx context.Context, channels ...string) error {
	return s.ps.Unsubscribe(ctx, channels...)
}

// Next waits for the next notice; ok is false once the Subscriber is closed
// or quit is closed.
func (s *Subscriber) Next(quit <-chan struct{}) (n Notice, ok bool) {
	for {
		var msg any
		select {
		case msg = <-s.ch:
		case <-quit:
			return Notice{}, false
		}
		switch m := msg.(type) {
		case *redis.Message:
			return Notice{Channel: m.Channel}, true
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				return Notice{Channel: m.Channel, Subscribed: true}, true
			}
		case nil:
			return Notice{}, false // closed
		}
	}
}

// Close closes the connection; Next then returns false.
func (s *Subscriber) Close() error { return s.ps.Close() }
