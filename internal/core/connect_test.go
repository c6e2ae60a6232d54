package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func TestParseURLForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		url  string
		want func(o dialOptions) bool
	}{
		{"one server", "redis://u:p@h:1/2", func(o dialOptions) bool {
			return o.single != nil && o.single.Addr == "h:1" && o.single.DB == 2 && o.single.Username == "u" &&
				o.single.Password == "p" && o.single.TLSConfig == nil
		}},
		{"one server over TLS", "rediss://h:1", func(o dialOptions) bool {
			return o.single != nil && o.single.TLSConfig != nil && o.single.TLSConfig.ServerName == "h"
		}},
		{"socket", "unix:///tmp/r.sock", func(o dialOptions) bool {
			return o.single != nil && o.single.Network == "unix" && o.single.Addr == "/tmp/r.sock"
		}},
		{"cluster", "redis+cluster://h1:7000?addr=h2:7001&addr=h3:7002", func(o dialOptions) bool {
			return o.cluster != nil && slices.Equal(o.cluster.Addrs, []string{"h1:7000", "h2:7001", "h3:7002"}) &&
				o.cluster.TLSConfig == nil
		}},
		{"cluster seeded by one node, over TLS, with a password", "rediss+cluster://u:p@h1:7000/0?dial_timeout=2s", func(o dialOptions) bool {
			return o.cluster != nil && slices.Equal(o.cluster.Addrs, []string{"h1:7000"}) && o.cluster.TLSConfig != nil &&
				o.cluster.Username == "u" && o.cluster.Password == "p" && o.cluster.DialTimeout == 2*time.Second
		}},
		{"scheme in capitals", "REDIS+CLUSTER://h:1", func(o dialOptions) bool { return o.cluster != nil }},
		{"sentinel", "redis+sentinel://s1:26379/3?master_name=mymaster&addr=s2:26380&password=mpw", func(o dialOptions) bool {
			f := o.failover
			return f != nil && f.MasterName == "mymaster" && slices.Equal(f.SentinelAddrs, []string{"s1:26379", "s2:26380"}) &&
				f.DB == 3 && f.Password == "mpw" && f.SentinelPassword == "" && f.TLSConfig == nil
		}},
		{"sentinel over TLS with the Sentinels' password", "rediss+sentinel://:spw@s1?master_name=m", func(o dialOptions) bool {
			f := o.failover
			return f != nil && f.MasterName == "m" && slices.Equal(f.SentinelAddrs, []string{"s1:6379"}) &&
				f.SentinelPassword == "spw" && f.TLSConfig != nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseURL(c.url)
			if err != nil {
				t.Fatal(err)
			}
			if !c.want(o) {
				t.Fatalf("parsed %+v %+v %+v", o.single, o.cluster, o.failover)
			}
		})
	}
}

// Every URL below holds the password hunter2: no error may show it.
func TestDialURLErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url  string
		want string
	}{
		{"http://u:hunter2@h", `unsupported scheme "http"`},
		{"redis+replica://u:hunter2@h", `unsupported scheme "redis+replica"`},
		{"unix+cluster://u:hunter2@/x", `unsupported scheme "unix+cluster"`},
		{"u:hunter2@h://x", `unsupported scheme "…"`},
		{"u:hunter2@h", "want scheme://host"},
		{"redis://u:hunter2@h:port", "invalid port"},
		{"redis://u:hunter2%zz@h", "invalid %-escape"},
		{"redis://u:hunter2@h?addr=h2:1", "use redis+cluster:// for a Redis Cluster or redis+sentinel:// for Sentinel"},
		{"rediss://u:hunter2@h?master_name=m", "use rediss+sentinel://"},
		{"redis+sentinel://u:hunter2@h", "needs master_name="},
		{"redis+cluster://u:hunter2@h/3", "no database number"},
		{"redis+cluster://u:hunter2@h?addr=nope", "unable to parse addr param: nope"},
		{"redis://u:hunter2@h/x", "invalid database number"},
		{"redis://u:hunter2@h?bogus=1", "unexpected option: bogus"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			t.Parallel()
			rdb, err := Dial(c.url, TLSFiles{})
			if err == nil {
				rdb.Close()
				t.Fatal("no error")
			}
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Errorf("%T is not a *URLError", err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "hunter2") {
				t.Fatalf("error %q: want it to say %q and not show the password", msg, c.want)
			}
		})
	}
}

func TestDialMakesTheClientTheURLNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url  string
		want string
	}{
		{"redis://h:1", "*redis.Client"},
		{"redis+cluster://h1:1?addr=h2:2", "*redis.ClusterClient"},
		{"redis+sentinel://s:1?master_name=m", "*redis.Client"},
	} {
		rdb, err := Dial(c.url, TLSFiles{})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", rdb); got != c.want {
			t.Errorf("%s: %s, want %s", c.url, got, c.want)
		}
		// A failover client's options name no server: it asks the Sentinels.
		if cl, ok := rdb.(*redis.Client); ok && strings.Contains(c.url, "sentinel") && cl.Options().Addr != "FailoverClient" {
			t.Errorf("%s: a client of %s, want a failover client", c.url, cl.Options().Addr)
		}
		rdb.Close()
	}
}

func TestDialTLSFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	const url = "rediss://u:hunter2@h:1"
	for _, c := range []struct {
		name  string
		url   string
		files TLSFiles
		want  string
	}{
		{"files without TLS", "redis://u:hunter2@h:1", TLSFiles{CA: notPEM}, "TLS files given for a URL without TLS: use rediss://"},
		{"unreadable CA", url, TLSFiles{CA: missing}, "TLS CA file: open " + missing + ": no such file"},
		{"CA not PEM", url, TLSFiles{CA: notPEM}, "TLS CA file " + notPEM + ": no PEM certificate in it"},
		{"certificate without key", url, TLSFiles{Cert: notPEM}, "certificate and key go together"},
		{"key without certificate", url, TLSFiles{Key: notPEM}, "certificate and key go together"},
		{"certificate not PEM", url, TLSFiles{Cert: notPEM, Key: notPEM}, "TLS client certificate " + notPEM + " and key " + notPEM + ": tls: failed to find any PEM data"},
		{"unreadable certificate", url, TLSFiles{Cert: missing, Key: notPEM}, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rdb, err := Dial(c.url, c.files)
			if err == nil {
				rdb.Close()
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "hunter2") {
				t.Fatalf("error %q: want it to say %q and not show the password", msg, c.want)
			}
		})
	}
}

func ping(rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func TestDialTLS(t *testing.T) {
	t.Parallel()
	s := testredis.StartTLS(t)
	url := "rediss://" + s.Addr + "?max_retries=-1"
	for _, c := range []struct {
		name  string
		files TLSFiles
		want  string // in ping's error; "" for none
	}{
		{"CA and client certificate", TLSFiles{CA: s.CAFile, Cert: s.CertFile, Key: s.KeyFile}, ""},
		{"another CA", TLSFiles{CA: s.OtherCAFile, Cert: s.CertFile, Key: s.KeyFile}, "certificate signed by unknown authority"},
		{"the system's roots", TLSFiles{Cert: s.CertFile, Key: s.KeyFile}, "certificate signed by unknown authority"},
		{"no client certificate", TLSFiles{CA: s.CAFile}, "certificate required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rdb, err := Dial(url, c.files)
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			err = ping(rdb)
			if c.want == "" && err != nil {
				t.Fatal(err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("ping = %v, want an error saying %q", err, c.want)
			}
		})
	}
}

func TestDialCluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	for _, url := range []string{
		"redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2],
		"redis+cluster://" + addrs[1], // one seed finds the others
	} {
		rdb, err := Dial(url, TLSFiles{})
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		cc, ok := rdb.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("%s: %T, want *redis.ClusterClient", url, rdb)
		}
		ctx := context.Background()
		// Keys in every node's slots: each write must reach its node.
		for i := range 30 {
			k := fmt.Sprintf("%s:k%d", testredis.Namespace(t), i)
			if err := cc.Set(ctx, k, i, time.Minute).Err(); err != nil {
				t.Fatalf("%s: SET %s: %v", url, k, err)
			}
		}
		var masters atomic.Int32 // ForEachMaster calls in parallel
		err = cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { masters.Add(1); return nil })
		if err != nil || masters.Load() != 3 {
			t.Fatalf("%s: %d masters, %v; want 3", url, masters.Load(), err)
		}
	}
}

func TestDialSentinel(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	master := strings.TrimPrefix(testredis.URL(), "redis://")
	sentinel := testredis.StartSentinel(t, "mymaster", master)
	rdb, err := Dial("redis+sentinel://"+sentinel+"?master_name=mymaster", TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	k := testredis.Namespace(t) + ":k"
	if err := rdb.Set(ctx, k, "through sentinel", time.Minute).Err(); err != nil {
		t.Fatalf("SET through Sentinel: %v", err)
	}
	// The write reached the master the Sentinel names.
	if v, err := testredis.Client(t).Get(ctx, k).Result(); err != nil || v != "through sentinel" {
		t.Fatalf("GET on the master = %q, %v", v, err)
	}
}

func TestAppConnection(t *testing.T) {
	t.Parallel()
	ep := Endpoint{URL: testredis.URL()}
	a, err := NewApp(Setup{Endpoint: ep, Namespace: "ns1"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got, ok := a.Endpoint(); !ok || got != ep || !a.OwnsClient() {
		t.Fatalf("Endpoint() = %+v, %v; OwnsClient %v; want %+v, true, true", got, ok, a.OwnsClient(), ep)
	}
	// Before its first use, an App can be configured again (worker.Main).
	first := a.conn.rdb
	ep2 := Endpoint{URL: testredis.URL() + "/1"}
	s := a.Setup()
	s.Endpoint = ep2
	if err := a.Configure(s); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Endpoint(); got != ep2 || a.Namespace() != "ns1" {
		t.Fatalf("after Configure: %+v in %q, want %+v in ns1", got, a.Namespace(), ep2)
	}
	if err := ping(first); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("the replaced client: ping = %v, want it closed", err)
	}
	s.Endpoint = Endpoint{URL: "http://x"}
	if err := a.Configure(s); err == nil {
		t.Fatal("Configure to a bad URL: no error")
	}
	s = a.Setup()
	s.Namespace = "ns2"
	if err := a.Configure(s); err != nil || a.Namespace() != "ns2" {
		t.Fatalf("Configure namespace: %v, namespace %q", err, a.Namespace())
	}
	s.Namespace = "a:b"
	var se *SettingError
	if err := a.Configure(s); !errors.As(err, &se) || se.Setting != "namespace" || a.Namespace() != "ns2" {
		t.Fatalf("Configure namespace a:b = %v, namespace %q; want a namespace error and no change", err, a.Namespace())
	}
	s.Namespace, s.Replication = "ns2", broker.Replication{Replicas: 1, Timeout: time.Hour}
	if err := a.Configure(s); !errors.As(err, &se) || se.Setting != "wait-replicas" || a.Setup().Replication.Replicas != 0 {
		t.Fatalf("Configure a WAIT beyond the read timeout = %v; want a wait-replicas error and no change", err)
	}

	// The first use fixes the connection: what it returned is never replaced.
	b := a.Broker()
	if b.Namespace() != "ns2" || ping(a.Redis()) != nil {
		t.Fatalf("first use: namespace %q, ping %v", b.Namespace(), ping(a.Redis()))
	}
	s.Replication, s.Namespace = broker.Replication{}, "ns3"
	if err := a.Configure(s); !errors.Is(err, ErrUsed) || a.Broker() != b || a.Namespace() != "ns2" {
		t.Fatalf("Configure after the first use = %v; want ErrUsed and no change", err)
	}
	if !strings.Contains(ErrUsed.Error(), "the App was used before worker.Main") {
		t.Fatalf("ErrUsed says %q", ErrUsed)
	}

	// A client the program passed is the program's: never replaced.
	rdb := testredis.Client(t)
	p, err := NewApp(Setup{Client: rdb, Namespace: "ns"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Endpoint(); ok || p.OwnsClient() {
		t.Fatal("an App on the program's client claims it")
	}
	ps := p.Setup()
	ps.Client, ps.Endpoint = nil, ep
	if err := p.Configure(ps); err == nil || !strings.Contains(err.Error(), "the program passes its own Redis client") {
		t.Fatalf("Configure on the program's client = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Redis() != rdb || ping(rdb) != nil {
		t.Fatal("the program's client was replaced or closed")
	}
}
