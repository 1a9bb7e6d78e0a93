package conductor_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
	"github.com/rivetmetal/rivet/wire"
)

// rawCall does a request with a raw body and returns the status and the
// Ironic fault string of the answer ("" when it is not an error body).
func rawCall(t *testing.T, method, url string, body io.Reader, length int64) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set(wire.APIVersionHeader, "1.89")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e wire.IronicError
	if jerr := json.Unmarshal(data, &e); jerr == nil && e.ErrorMessage != "" {
		return resp.StatusCode, e.Fault().FaultString
	}
	return resp.StatusCode, ""
}

// TestHostPathsConfinedThroughTheAPI: deploy files and file:// image
// sources a node names must be regular files in the allowed directories:
// refused when set (400, nothing stored), at validation and at use when a
// file was swapped for a link out after it was set; the database is never
// served.
func TestHostPathsConfinedThroughTheAPI(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	allowed := filepath.Join(h.Dir(), "allowed")
	if err := os.MkdirAll(allowed, 0o750); err != nil {
		t.Fatal(err)
	}
	cfg := h.Config()
	cfg.FileURLAllowedPaths = []string{allowed}
	cfg.ImageCacheDir = filepath.Join(h.Dir(), "cache")
	h.Start(cfg)
	uuid := h.EnrollNode()
	kernel := filepath.Join(allowed, "kernel")
	os.WriteFile(kernel, []byte("NODE KERNEL"), 0o644)
	os.WriteFile(filepath.Join(allowed, "ramdisk"), []byte("NODE RAMDISK"), 0o644)
	db := cfg.DBPath

	patch := func(path string, value any) (int, string) {
		var out map[string]any
		st := h.Call("PATCH", "/v1/nodes/n1", []map[string]any{{"op": "add", "path": path, "value": value}}, &out)
		if st != http.StatusOK {
			return st, conductortest.IronicFault(t, out).FaultString
		}
		return st, ""
	}
	for _, tc := range []struct {
		path, value, want string
	}{
		{"/driver_info/deploy_kernel", "/etc/shadow", "not in a directory allowed"},
		{"/driver_info/deploy_kernel", "file:///etc/shadow", "not in a directory allowed"},
		{"/driver_info/deploy_ramdisk", db, "not in a directory allowed"},
		{"/driver_info/deploy_ramdisk", filepath.Join(allowed, "..", "rivet.db"), "not in a directory allowed"},
		{"/driver_info/deploy_kernel", "/dev/zero", "not in a directory allowed"},
		{"/instance_info/image_source", "file:///dev/zero", "not in a directory allowed"},
		{"/instance_info/image_source", "file://" + db, "not in a directory allowed"},
		{"/instance_info/image_source", "file://" + filepath.Join(allowed, "missing.img"), "does not exist"},
	} {
		st, msg := patch(tc.path, tc.value)
		if st != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
			t.Errorf("PATCH %s=%s: %d %q, want 400 %q", tc.path, tc.value, st, msg, tc.want)
		}
	}
	n := h.StoredNode("n1")
	if _, ok := n.DriverInfo["deploy_kernel"]; ok || n.InstanceInfo["image_source"] != nil {
		t.Fatalf("a refused path was stored: %v %v", n.DriverInfo, n.InstanceInfo)
	}
	var out map[string]any
	if st := h.Call("POST", "/v1/nodes", map[string]any{"name": "n2", "driver": "fake-hardware",
		"driver_info": map[string]any{"deploy_ramdisk": "/etc/shadow"}}, &out); st != http.StatusBadRequest {
		t.Errorf("create with deploy_ramdisk=/etc/shadow: %d %v", st, out)
	}
	if st := h.Call("GET", "/v1/nodes/n2", nil, nil); st != http.StatusNotFound {
		t.Errorf("the refused node exists: %d", st)
	}

	// Allowed, then swapped for a link to the database.
	if st, msg := patch("/driver_info/deploy_kernel", kernel); st != http.StatusOK {
		t.Fatalf("allowed deploy_kernel: %d %s", st, msg)
	}
	if st, msg := patch("/driver_info/deploy_ramdisk", "file://"+filepath.Join(allowed, "ramdisk")); st != http.StatusOK {
		t.Fatalf("allowed deploy_ramdisk: %d %s", st, msg)
	}
	if st, body := get(t, h.URL()+"/boot/"+uuid+"/deploy_kernel"); st != 200 || body != "NODE KERNEL" {
		t.Fatalf("allowed kernel served: %d %q", st, body)
	}
	os.Remove(kernel)
	if err := os.Symlink(db, kernel); err != nil {
		t.Fatal(err)
	}
	if st, body := get(t, h.URL()+"/boot/"+uuid+"/deploy_kernel"); st != http.StatusNotFound || strings.Contains(body, "SQLite") {
		t.Errorf("swapped kernel: %d, %d bytes", st, len(body))
	}
	var v map[string]map[string]any
	if st := h.Call("GET", "/v1/nodes/n1/validate", nil, &v); st != 200 || v["boot"]["result"] != false ||
		!strings.Contains(fmt.Sprint(v["boot"]["reason"]), "leads out of its allowed directory") {
		t.Errorf("validate with a swapped kernel: %d %v", st, v["boot"])
	}
	h.SetImage("n1")
	if st := h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active"}, &out); st != http.StatusBadRequest ||
		!strings.Contains(conductortest.IronicFault(t, out).FaultString, "leads out") {
		t.Errorf("deploy with a swapped kernel: %d %v", st, out)
	}
	// A change elsewhere is not blocked by it.
	if st, msg := patch("/extra/owner", "ops"); st != http.StatusOK {
		t.Errorf("unrelated PATCH: %d %s", st, msg)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRequestBodyLimits: bodies over their route's cap get 413 with the
// API's error body, declared or not; anything after the JSON value is
// refused; config drives are held to the agent's 64 MiB once decoded, and
// a JSON one to its value count, before anything is built.
func TestRequestBodyLimits(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	base := h.URL()
	big := bytes.Repeat([]byte(" "), 2<<20)
	st, msg := rawCall(t, "POST", base+"/v1/nodes", bytes.NewReader(big), int64(len(big)))
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "larger than the limit of 1048576 bytes") {
		t.Errorf("declared 2 MiB body: %d %q", st, msg)
	}
	st, msg = rawCall(t, "POST", base+"/v1/nodes", io.MultiReader(bytes.NewReader(big)), -1)
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "larger than the limit") {
		t.Errorf("chunked 2 MiB body: %d %q", st, msg)
	}
	// A declared 200 MiB body is refused before it is sent.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/nodes/n1/states/provision HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"X-OpenStack-Ironic-API-Version: 1.89\r\nContent-Length: %d\r\n\r\n{", 200<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(data, []byte("limit of 100663296 bytes")) {
		t.Errorf("declared 200 MiB provision body: %d %s", resp.StatusCode, data)
	}
	for body, want := range map[string]string{
		`{"name":"x","driver":"fake-hardware"} {"name":"y"}`: "unexpected data after the JSON value",
		`{"name":"x","driver":"fake-hardware"}garbage`:       "unexpected data after the JSON value",
		`[{"op":"add","path":"/extra/a","value":1}] []`:      "unexpected data after the JSON value",
	} {
		url := base + "/v1/nodes"
		method := "POST"
		if strings.HasPrefix(body, "[") {
			url, method = base+"/v1/nodes/n1", "PATCH"
		}
		if st, msg := rawCall(t, method, url, strings.NewReader(body), int64(len(body))); st != http.StatusBadRequest || !strings.Contains(msg, want) {
			t.Errorf("%s %q: %d %q", method, body, st, msg)
		}
	}
	if st := h.Call("GET", "/v1/nodes/x", nil, nil); st != http.StatusNotFound {
		t.Errorf("a body with trailing data created a node: %d", st)
	}

	// Config drive bombs: 64 MiB + 1 of zeros in 65 KiB of gzip, and a
	// description of 100,001 values.
	var gz bytes.Buffer
	z, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zero := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		z.Write(zero)
	}
	z.Write([]byte{0})
	z.Close()
	bomb := base64.StdEncoding.EncodeToString(gz.Bytes())
	many := map[string]any{}
	for i := 0; i <= 100_000; i++ {
		many[fmt.Sprint(i)] = i
	}
	for name, cd := range map[string]any{
		"gzip bomb":     bomb,
		"many values":   map[string]any{"meta_data": many},
		"not an object": []any{1, 2},
	} {
		var out map[string]any
		st := h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active", "configdrive": cd}, &out)
		if st != http.StatusBadRequest || !strings.Contains(conductortest.IronicFault(t, out).FaultString, "Invalid configdrive") {
			t.Errorf("%s: %d %v", name, st, out)
		}
	}
	if n := h.Node("n1"); n["provision_state"] != "available" {
		t.Errorf("a refused config drive moved the node to %v", n["provision_state"])
	}
}

// TestConfigdriveSentOnce: write_image carries the config drive once (its
// args), not also in image_info and the node document.
func TestConfigdriveSentOnce(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 10 * time.Millisecond})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	random := make([]byte, 128<<10)
	rand.Read(random)
	var gz bytes.Buffer
	z := gzip.NewWriter(&gz)
	z.Write(random)
	z.Close()
	drive := base64.StdEncoding.EncodeToString(gz.Bytes())
	h.Provision("n1", "active", drive)
	h.WaitState("n1", "active", 60*time.Second)
	body := h.Agent().WriteImageRequest()
	if got := bytes.Count(body, []byte(drive)); got != 1 {
		t.Fatalf("the config drive is in the write_image request %d times, want once", got)
	}
	if len(body) > len(drive)+32<<10 {
		t.Errorf("write_image request is %d bytes for a %d-byte drive", len(body), len(drive))
	}
	if info := h.Agent().ImageInfo(); info == nil || info.Configdrive == nil || *info.Configdrive != drive {
		t.Error("the agent did not get the config drive")
	}
}

// TestSlowClientsAreCutOff: a client that sends its headers too slowly
// (slowloris), or its body, has its connection closed; a file download
// that keeps going is not cut off by the write timeout, one that stalls
// is.
func TestSlowClientsAreCutOff(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.Timeouts = conductor.Timeouts{ReadHeader: 300 * time.Millisecond, Read: 500 * time.Millisecond,
		Write: 500 * time.Millisecond, Idle: time.Second, Download: time.Second}
	big := make([]byte, 32<<20)
	if err := os.WriteFile(filepath.Join(cfg.ImageDir, "big.raw"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	h.Start(cfg)
	addr := strings.TrimPrefix(h.URL(), "http://")

	closed := func(what string, conn net.Conn) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", what)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /v1 HTTP/1.1\r\nHost: x\r\n")
	closed("headers never finished", conn)

	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprint(conn2, "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":")
	closed("body never finished", conn2)

	// A steady download of 32 MiB outlasts the 0.5 s write timeout.
	resp, err := http.Get(h.URL() + "/images/big.raw")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // 4 MiB in ~40 ms: well inside the 1 s per 4 MiB, even on a busy machine
	}
	resp.Body.Close()
	if n != int64(len(big)) {
		t.Errorf("steady download got %d of %d bytes", n, len(big))
	}

	// A download that stops reading is cut off.
	conn3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn3.Close()
	fmt.Fprint(conn3, "GET /images/big.raw HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(3 * time.Second) // past the 1 s allowed for the first 4 MiB
	conn3.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, _ := io.Copy(io.Discard, bufio.NewReader(conn3))
	if got >= int64(len(big)) {
		t.Errorf("stalled download got all %d bytes", got)
	}
}
