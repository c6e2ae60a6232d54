package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A server that says why it refuses a connection and hangs up with a reset:
// the client's write fails, and its error carries what the server said, which
// the reset would otherwise hide.
func TestHungUpSaysWhy(t *testing.T) {
	t.Parallel()
	cert := selfSigned(t)
	for _, c := range []struct {
		name string
		tls  bool
		want string
	}{
		{"plain: an error line", false, "max number of clients reached"},
		{"TLS: no client certificate", true, "certificate required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			dialed, served := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(served)
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				raw := conn.(*net.TCPConn)
				_ = raw.SetLinger(0) // close with a reset, as a server with unread data does
				defer raw.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if c.tls {
					srv := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert,
						MinVersion: tls.VersionTLS13})
					_ = srv.Handshake() // fails: sends the alert
					return
				}
				select {
				case <-dialed:
				case <-time.After(5 * time.Second):
				}
				_, _ = conn.Write([]byte("-ERR max number of clients reached\r\n"))
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			close(dialed)
			var conn net.Conn = raw
			if c.tls {
				tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // a test server's own certificate
				if err := tc.Handshake(); err != nil {
					t.Fatal(err) // TLS 1.3: the client finishes before the server checks
				}
				conn = tc
			}
			<-served
			w := &watchedConn{Conn: conn, r: &reach{tls: c.tls}}
			// Write until the reset is met (the first write may go out before it).
			var werr error
			for deadline := time.Now().Add(5 * time.Second); werr == nil && time.Now().Before(deadline); {
				_, werr = w.Write([]byte("*1\r\n$4\r\nPING\r\n"))
			}
			if werr == nil || !(errors.Is(werr, syscall.ECONNRESET) || errors.Is(werr, syscall.EPIPE)) {
				t.Fatalf("write = %v, want a reset", werr)
			}
			if !strings.Contains(werr.Error(), c.want) {
				t.Fatalf("write = %v, want it to say %q", werr, c.want)
			}
		})
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
