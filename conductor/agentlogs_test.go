package conductor_test

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/internal/conductortest"
	"github.com/rivetmetal/rivet/wire"
)

// TestAgentLogsOverTheAPI follows a deploying node's agent log through
// the conductor (GET …/rivet/agent_logs/live?follow=true) until the agent
// is powered off, then lists and downloads the archive the conductor
// collected at the deploy's end; without a running agent the live route
// is a 409, and names that are not the node's archives are 404s.
func TestAgentLogsOverTheAPI(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 300 * time.Millisecond})
	cfg := h.Config()
	cfg.Provision.LogsCollect = provision.LogsAlways
	h.Start(cfg)
	uuid := h.EnrollNode()
	base := h.URL() + "/v1/nodes/n1/rivet/agent_logs"

	resp, err := http.Get(base + "/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("live log of a node without an agent: %d", resp.StatusCode)
	}

	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitInternal("n1", "an agent", 20*time.Second, func(dii map[string]any) bool { return dii["agent_url"] != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/live?follow=true", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(wire.AgentLogOffsetHeader) != "0" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("live log: %d %s", resp.StatusCode, b)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	// The stream ended: the agent was powered off at the deploy's end.
	got := strings.Join(lines, "\n")
	for _, want := range []string{"fakeagent: command deploy.execute_deploy_step", "fakeagent: command standby.get_partition_uuids",
		"fakeagent: command log.collect_system_logs"} {
		if !strings.Contains(got, want) {
			t.Errorf("followed log lacks %q:\n%s", want, got)
		}
	}
	h.WaitState("n1", "active", 20*time.Second)

	var idx struct {
		AgentLogs []struct {
			Name  string      `json:"name"`
			Label string      `json:"label"`
			Bytes int64       `json:"bytes"`
			Links []wire.Link `json:"links"`
		} `json:"agent_logs"`
		AgentRunning bool `json:"agent_running"`
	}
	if st := h.Call("GET", "/v1/nodes/n1/rivet/agent_logs", nil, &idx); st != 200 || len(idx.AgentLogs) != 1 || idx.AgentRunning {
		t.Fatalf("index: %d %+v", st, idx)
	}
	a := idx.AgentLogs[0]
	if a.Label != "deploy" || !strings.HasPrefix(a.Name, uuid+"_") || a.Bytes <= 0 || len(a.Links) != 1 {
		t.Fatalf("archive %+v", a)
	}
	resp, err = http.Get(a.Links[0].Href)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("archive download: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "journal" {
		t.Fatalf("archive's first file: %v %v", hdr, err)
	}
	if b, _ := io.ReadAll(tr); string(b) != "fake agent journal\n" {
		t.Fatalf("journal %q", b)
	}

	for _, name := range []string{"nope.tar.gz", "..%2F..%2Frivet.db", strings.Replace(a.Name, uuid, "00000000-0000-0000-0000-000000000000", 1)} {
		var out map[string]any
		if st := h.Call("GET", "/v1/nodes/n1/rivet/agent_logs/"+name, nil, &out); st != http.StatusNotFound {
			t.Errorf("archive %q: %d %v", name, st, out)
		}
	}
	var bad map[string]any
	if st := h.Call("GET", "/v1/nodes/n1/rivet/agent_logs/live?offset=-1", nil, &bad); st != http.StatusBadRequest {
		t.Errorf("negative offset: %d", st)
	}
}

// TestAgentLogStreamEndsAtShutdown: a followed agent log ends when the
// conductor shuts down, while the agent still runs.
func TestAgentLogStreamEndsAtShutdown(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 10 * time.Minute})
	h.Start(h.Config())
	h.EnrollNode()
	// The image comes from elsewhere: the agent goes on writing while the
	// conductor is down.
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(h.Image()) }))
	defer images.Close()
	h.SetImageURL("n1", images.URL+"/disk.raw")
	h.Provision("n1", "active", nil)
	h.WaitInternal("n1", "an agent", 20*time.Second, func(dii map[string]any) bool { return dii["agent_url"] != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL()+"/v1/nodes/n1/rivet/agent_logs/live?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("live log: %d", resp.StatusCode)
	}
	h.Stop()
	if _, err := io.ReadAll(resp.Body); ctx.Err() != nil {
		t.Fatalf("the stream outlived the conductor's shutdown: %v", err)
	}
}
