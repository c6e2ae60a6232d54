package core

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/settings"
)

// TLSFiles name PEM files for a TLS connection (a rediss URL). An empty field is
// not used: without CA the system's roots verify the server, and without Cert
// and Key no client certificate is offered.
type TLSFiles struct {
	CA   string // CA certificates that verify the server, in place of the system's
	Cert string // the client certificate (chain); needs Key
	Key  string // the client certificate's private key; needs Cert
}

// Endpoint is what an App that makes its own client dials.
type Endpoint struct {
	URL string
	TLS TLSFiles
}

// URLError is a Redis URL that Dial cannot use. Its message never quotes the
// URL: it may hold a password.
type URLError struct{ Err error }

func (e *URLError) Error() string { return "redis URL: " + e.Err.Error() }
func (e *URLError) Unwrap() error { return e.Err }

// Dial returns a client for rawURL, whose scheme says what it names (the query
// never does, so that one node of a cluster is not mistaken for a server):
//
//	redis://, rediss://, unix://                 one server: a *redis.Client (go-redis's ParseURL)
//	redis+cluster://, rediss+cluster://          a Redis Cluster seeded by the host and each addr=:
//	                                             a *redis.ClusterClient (ParseClusterURL)
//	redis+sentinel://, rediss+sentinel://        the master named by master_name=, through the
//	                                             Sentinels at the host and each addr=: a failover
//	                                             *redis.Client (ParseFailoverURL)
//
// The client tells rediq's calls whether they reached Redis (broker.Watch),
// and dials once per attempt (go-redis's dialer_retries, default 1 here). It
// does not connect. files apply to TLS (rediss) URLs only; with a plain URL
// they are an error, so that a missing "s" cannot silently turn TLS off.
func Dial(rawURL string, files TLSFiles) (redis.UniversalClient, error) {
	o, err := parseURL(rawURL)
	if err != nil {
		return nil, &URLError{cleanURLError(err)}
	}
	if files != (TLSFiles{}) {
		if o.tls() == nil {
			return nil, errors.New("TLS files given for a URL without TLS: use rediss://, rediss+cluster:// or rediss+sentinel://")
		}
		if err := files.apply(o.tls()); err != nil {
			return nil, err
		}
	}
	// One dial per connection attempt unless the URL asks for more: go-redis
	// already retries a failed command (max_retries, with backoff), and its
	// default of five dials 100ms apart within each of those attempts made an
	// Enqueue to a closed port take seconds to fail.
	var rdb redis.UniversalClient
	switch {
	case o.cluster != nil:
		o.cluster.DialerRetries = cmp.Or(o.cluster.DialerRetries, 1)
		rdb = redis.NewClusterClient(o.cluster)
	case o.failover != nil:
		o.failover.DialerRetries = cmp.Or(o.failover.DialerRetries, 1)
		rdb = redis.NewFailoverClient(o.failover)
	default:
		o.single.DialerRetries = cmp.Or(o.single.DialerRetries, 1)
		rdb = redis.NewClient(o.single)
	}
	broker.Watch(rdb, o.tls() != nil)
	return rdb, nil
}

// dialOptions is a parsed URL: exactly one field is set.
type dialOptions struct {
	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

func (o dialOptions) tls() *tls.Config {
	switch {
	case o.cluster != nil:
		return o.cluster.TLSConfig
	case o.failover != nil:
		return o.failover.TLSConfig
	}
	return o.single.TLSConfig
}

func parseURL(raw string) (dialOptions, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return dialOptions{}, errors.New("want scheme://host…, such as redis://127.0.0.1:6379/0")
	}
	scheme = strings.ToLower(scheme)
	base, kind, _ := strings.Cut(scheme, "+")
	if (base != "redis" && base != "rediss" && base != "unix") || (base == "unix" && kind != "") ||
		(kind != "" && kind != "cluster" && kind != "sentinel") {
		if strings.Trim(scheme, "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "" {
			scheme = "…" // not a scheme: part of a mistyped URL, perhaps of its password
		}
		return dialOptions{}, fmt.Errorf("unsupported scheme %q: want redis, rediss, unix, redis+cluster, rediss+cluster, redis+sentinel or rediss+sentinel", scheme)
	}
	s := base + "://" + rest
	u, err := url.Parse(s)
	if err != nil {
		return dialOptions{}, err
	}
	q := u.Query()
	switch kind {
	case "cluster":
		// go-redis ignores the path of a cluster URL: a database number there
		// would be dropped silently, and a cluster has database 0 only.
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return dialOptions{}, fmt.Errorf("a cluster URL takes no database number (a cluster has database 0 only), got path %q", u.Path)
		}
		opt, err := redis.ParseClusterURL(s)
		return dialOptions{cluster: opt}, err
	case "sentinel":
		if q.Get("master_name") == "" {
			return dialOptions{}, errors.New("a sentinel URL needs master_name=NAME, the name the Sentinels know the master by")
		}
		opt, err := redis.ParseFailoverURL(s)
		return dialOptions{failover: opt}, err
	}
	// go-redis would only say "unexpected option": say which URL these belong in.
	if q.Has("addr") {
		return dialOptions{}, fmt.Errorf("addr= lists more nodes, which a %s:// URL does not take: use %[1]s+cluster:// for a Redis Cluster or %[1]s+sentinel:// for Sentinel", base)
	}
	if q.Has("master_name") {
		return dialOptions{}, fmt.Errorf("master_name= is for Sentinel: use %s+sentinel://", base)
	}
	opt, err := redis.ParseURL(s)
	return dialOptions{single: opt}, err
}

// cleanURLError drops what errors of url.Parse quote of the URL, and the
// "redis: " of go-redis's.
func cleanURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ee url.EscapeError
	if errors.As(err, &ee) {
		// It quotes the escape, which may be part of a password.
		return errors.New("invalid %-escape (a % in a password is written %25)")
	}
	if msg, ok := strings.CutPrefix(err.Error(), "redis: "); ok {
		return errors.New(msg)
	}
	return err
}

// apply loads the files into c.
func (f TLSFiles) apply(c *tls.Config) error {
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return fmt.Errorf("TLS CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("TLS CA file %s: no PEM certificate in it", f.CA)
		}
		c.RootCAs = roots
	}
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("TLS client certificate and key go together: give both files or neither")
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return fmt.Errorf("TLS client certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// DialApp returns an App on a client of its own dialed from ep.
func DialApp(ep Endpoint, ns string, log *zap.Logger) (*App, error) {
	rdb, err := Dial(ep.URL, ep.TLS)
	if err != nil {
		return nil, err
	}
	a := NewApp(rdb, true, ns, log)
	a.ep = ep
	return a, nil
}

// OwnsClient reports whether the App made its client, and so may replace and
// close it: false for a client the program passed in.
func (a *App) OwnsClient() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.own
}

// Endpoint returns what the App's client was dialed from; ok is false for a
// client the program passed in.
func (a *App) Endpoint() (ep Endpoint, ok bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.own {
		return Endpoint{}, false
	}
	return a.ep, true
}

// RedisName says which Redis the App uses, fit to log: the URL it was dialed
// from without its passwords, or the address of a client the program passed in.
func (a *App) RedisName() string {
	if ep, ok := a.Endpoint(); ok {
		return settings.Redact(ep.URL)
	}
	switch c := a.Broker().Client().(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	}
	return "the program's client"
}

// Connect points the App at ep (a worker's --redis-url), closing the client it
// replaces. It refuses to replace a client the program passed in: that client
// may be configured in ways a URL cannot say, and the program still uses it.
func (a *App) Connect(ep Endpoint) error {
	if !a.OwnsClient() {
		return errors.New("the program passes its own Redis client, which rediq does not replace")
	}
	rdb, err := Dial(ep.URL, ep.TLS)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.broker.Swap(a.Broker().Rebind(rdb, a.Broker().Namespace()))
	_ = old.Client().Close()
	a.ep = ep
	return nil
}

// SetNamespace switches the App to the key namespace ns (a worker's
// --namespace). Call it before the App is used.
func (a *App) SetNamespace(ns string) error {
	if err := broker.ValidateNamespace(ns); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.broker.Store(a.Broker().Rebind(a.Broker().Client(), ns))
	return nil
}

// SetReplication makes the App's task writes wait for replicas (a worker's
// --wait-replicas). Call it before the App is used.
func (a *App) SetReplication(r broker.Replication) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.broker.Store(a.Broker().WithReplication(r))
}
