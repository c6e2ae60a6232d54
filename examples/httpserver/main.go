// Command httpserver is a producer: POST /signup enqueues the emails example's
// welcome email and answers at once with the task's id; the worker example
// sends it. It connects to $REDIQ_REDIS_URL, else rediq.DefaultRedisURL, and
// never links the worker.
//
//	go run ./examples/httpserver -addr 127.0.0.1:8080
//	curl -X POST 'http://127.0.0.1:8080/signup?user_id=42&email=ada@example.com'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/examples/emails"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "httpserver:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := rediq.New(rediq.Config{})
	if err != nil {
		return err
	}
	defer app.Close()
	welcome := emails.Register(app, nil) // this process only enqueues

	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", func(w http.ResponseWriter, r *http.Request) {
		args := emails.WelcomeArgs{Email: r.FormValue("email")}
		id, err := strconv.ParseInt(r.FormValue("user_id"), 10, 64)
		if err != nil {
			err = fmt.Errorf("user_id %q is not an integer", r.FormValue("user_id"))
		} else {
			args.UserID = id
			err = args.Validate()
		}
		if err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		taskID, err := welcome.Enqueue(r.Context(), args)
		if err != nil {
			reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		reply(w, http.StatusAccepted, map[string]rediq.TaskID{"task_id": taskID})
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("listening on http://%s", ln.Addr())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
