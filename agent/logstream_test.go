package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// TestLogBufferOffsets: offsets count every byte written; a reader behind
// the kept window starts at its oldest byte; a write wakes a waiting
// reader.
func TestLogBufferOffsets(t *testing.T) {
	b := NewLogBuffer(10)
	data, from, next, written := b.Since(0, 100)
	if len(data) != 0 || from != 0 || next != 0 {
		t.Fatalf("empty buffer: %q %d %d", data, from, next)
	}
	b.Write([]byte("hello "))
	select {
	case <-written:
	default:
		t.Fatal("a write did not wake the reader")
	}
	b.Write([]byte("world!"))
	data, from, next, _ = b.Since(0, 100)
	if string(data) != "llo world!" || from != 2 || next != 12 {
		t.Fatalf("Since(0) = %q %d %d, want the kept 10 bytes from offset 2", data, from, next)
	}
	data, from, next, _ = b.Since(8, 3)
	if string(data) != "rld" || from != 8 || next != 11 {
		t.Fatalf("Since(8, 3) = %q %d %d", data, from, next)
	}
	data, from, next, written = b.Since(50, 3)
	if len(data) != 0 || from != 12 || next != 12 {
		t.Fatalf("Since(past the end) = %q %d %d", data, from, next)
	}
	select {
	case <-written:
		t.Fatal("woken without a write")
	default:
	}
	if string(b.Bytes()) != "llo world!" {
		t.Fatalf("Bytes = %q", b.Bytes())
	}
}

// TestLogStream reads the agent's log over its API: refused without the
// token (and while the agent holds none), the whole kept log from offset
// 0, the rest from an offset, and with follow the lines logged later, as
// they are logged.
func TestLogStream(t *testing.T) {
	logs := NewLogBuffer(1 << 20)
	cfg := standaloneConfig()
	_, base := startAgentWith(t, cfg, Options{Power: &fakePower{}, LogBuffer: logs})
	c := client{t: t, base: base}
	if st, b := c.do("GET", wire.AgentLogPath, nil); st != http.StatusUnauthorized {
		t.Fatalf("no token held: %d %s", st, b)
	}

	cfg.AgentToken = testToken
	_, base = startAgentWith(t, cfg, Options{Power: &fakePower{}, LogBuffer: logs})
	c = client{t: t, base: base}
	logs.Write([]byte("line 1\nline 2\n"))
	if st, b := c.do("GET", wire.AgentLogPath+"?agent_token=wrong", nil); st != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %s", st, b)
	}
	if st, b := c.do("GET", wire.AgentLogPath+"?agent_token="+testToken+"&offset=x", nil); st != http.StatusBadRequest {
		t.Fatalf("bad offset: %d %s", st, b)
	}
	st, b := c.do("GET", wire.AgentLogPath+"?agent_token="+testToken, nil)
	if st != 200 || !strings.HasSuffix(string(b), "line 1\nline 2\n") {
		t.Fatalf("whole log: %d %q", st, b)
	}
	all := int64(len(logs.Bytes()))
	resp, err := http.Get(fmt.Sprintf("%s%s?agent_token=%s&offset=%d", base, wire.AgentLogPath, testToken, all-7))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "line 2\n" || resp.Header.Get(wire.AgentLogOffsetHeader) != fmt.Sprint(all-7) {
		t.Fatalf("from an offset: %q, offset header %q", b, resp.Header.Get(wire.AgentLogOffsetHeader))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s%s?agent_token=%s&offset=%d&follow=true", base, wire.AgentLogPath, testToken, all), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for i := 3; i <= 5; i++ {
		want := fmt.Sprintf("line %d", i)
		logs.Write([]byte(want + "\n"))
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("followed %q (%v), want %q", lines.Text(), lines.Err(), want)
		}
	}
}

// TestLogStreamEndsAtShutdown: a followed stream ends when the agent
// stops, and does not hold its shutdown up (Run returns no error, which
// it does when the API's shutdown times out).
func TestLogStreamEndsAtShutdown(t *testing.T) {
	cfg := standaloneConfig()
	cfg.AgentToken = testToken
	cfg.ListenHost, cfg.ListenPort, cfg.AdvertiseHost = "127.0.0.1", freePort(t), "127.0.0.1"
	a, err := New(cfg, Options{Power: &fakePower{}, LogBuffer: NewLogBuffer(1 << 10), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	resp, err := http.Get(fmt.Sprintf("http://%s%s?agent_token=%s&follow=true", a.Addr(), wire.AgentLogPath, testToken))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body)
		read <- err
	}()
	cancel()
	err = <-done
	resp.Body.Close() // unblocks the read if the stream did not end
	if err != nil {
		t.Fatalf("agent Run: %v (a log stream held the API's shutdown up)", err)
	}
	<-read
}
