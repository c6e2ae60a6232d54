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

// Setup is what an App's connection is made of.
type Setup struct {
	// Client is the program's client, used as is and never closed nor
	// replaced; nil: the App dials Endpoint and closes that client itself.
	Client      redis.UniversalClient
	Endpoint    Endpoint // unused with Client
	Namespace   string
	Replication broker.Replication // the WAIT after task writes
}

// SettingError is a setting of a Setup that cannot be used. Setting is its
// key in package settings ("namespace", "wait-replicas"), so that a caller
// can name where the value came from; the message is Err's. A bad URL is a
// *URLError instead, and a bad TLS file an error of its own.
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// ErrUsed is Configure's answer once the App was used.
var ErrUsed = errors.New("the App was used before worker.Main; its Redis client and namespace are fixed by its first use " +
	"(an enqueue, a read, App.Redis, a worker), so the command line can no longer change them: call worker.Main first")

// check validates s and returns the client it makes: was's client rdb when s
// has was's endpoint or client, else a new one (dialed, not connected).
func (s Setup) check(rdb redis.UniversalClient, was Setup) (redis.UniversalClient, error) {
	if err := broker.ValidateNamespace(s.Namespace); err != nil {
		return nil, &SettingError{settings.Namespace.Key, err}
	}
	next := rdb
	switch {
	case s.Client != nil:
		next = s.Client
	case rdb == nil || was.Client != nil || s.Endpoint != was.Endpoint:
		var err error
		if next, err = Dial(s.Endpoint.URL, s.Endpoint.TLS); err != nil {
			return nil, err
		}
	}
	if err := s.Replication.Check(next); err != nil {
		if next != rdb && s.Client == nil {
			_ = next.Close() // never used
		}
		return nil, &SettingError{settings.WaitReplicas.Key, err}
	}
	return next, nil
}

// Setup returns what the App's connection is made of.
func (a *App) Setup() Setup {
	a.conn.Lock()
	defer a.conn.Unlock()
	return a.conn.setup
}

// Configure remakes the App's connection from s (worker.Main's flags). It is
// allowed only before the App's first use (ErrUsed after it), so that no
// client or broker that something holds is ever replaced; the client it
// replaces did no I/O and is closed. A client the program passed in is kept:
// s must keep it.
func (a *App) Configure(s Setup) error {
	a.conn.Lock()
	defer a.conn.Unlock()
	if a.conn.fixed {
		return ErrUsed
	}
	was := a.conn.setup
	if was.Client != nil && (s.Client != was.Client || s.Endpoint != was.Endpoint) {
		return errors.New("the program passes its own Redis client, which rediq does not replace")
	}
	if was.Client == nil && s.Client != nil {
		return errors.New("an App that dials its own Redis client does not take the program's")
	}
	rdb, err := s.check(a.conn.rdb, was)
	if err != nil {
		return err
	}
	if rdb != a.conn.rdb {
		_ = a.conn.rdb.Close()
	}
	a.conn.setup, a.conn.rdb = s, rdb
	return nil
}

// Namespace returns the App's key namespace, without fixing it as Broker does.
func (a *App) Namespace() string {
	a.conn.Lock()
	defer a.conn.Unlock()
	return a.conn.setup.Namespace
}

// OwnsClient reports whether the App made its client, and so closes it:
// false for a client the program passed in.
func (a *App) OwnsClient() bool {
	a.conn.Lock()
	defer a.conn.Unlock()
	return a.conn.setup.Client == nil
}

// Endpoint returns what the App's client was dialed from; ok is false for a
// client the program passed in.
func (a *App) Endpoint() (ep Endpoint, ok bool) {
	a.conn.Lock()
	defer a.conn.Unlock()
	if a.conn.setup.Client != nil {
		return Endpoint{}, false
	}
	return a.conn.setup.Endpoint, true
}

// RedisName says which Redis the App uses, fit to log: the URL it was dialed
// from without its passwords, or the address of a client the program passed in.
func (a *App) RedisName() string {
	if ep, ok := a.Endpoint(); ok {
		return settings.Redact(ep.URL)
	}
	switch c := a.Setup().Client.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	}
	return "the program's client"
}
