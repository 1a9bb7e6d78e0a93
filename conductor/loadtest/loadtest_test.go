package loadtest

import (
	"errors"
	"testing"
	"time"
)

func TestRecorderPercentiles(t *testing.T) {
	var r recorder
	for i := 1; i <= 1000; i++ {
		var err error
		if i%250 == 0 {
			err = errors.New("HTTP 503")
		}
		r.add(time.Duration(i)*time.Millisecond, err)
	}
	s := r.stats(10 * time.Second)
	if s.Count != 1000 || s.Errors != 4 || s.FirstError != "HTTP 503" {
		t.Fatalf("counts: %+v", s)
	}
	if s.P50 != 501*time.Millisecond || s.P99 != 991*time.Millisecond || s.Max != time.Second {
		t.Fatalf("percentiles: p50 %v p99 %v max %v", s.P50, s.P99, s.Max)
	}
	if s.Rate != 100 {
		t.Fatalf("rate %v, want 100/s", s.Rate)
	}
	if (&recorder{}).stats(time.Second).Count != 0 {
		t.Fatal("empty recorder")
	}
}

func TestMachineCPU(t *testing.T) {
	a, err := machineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if a.cores < 1 || a.total <= 0 || a.busy > a.total {
		t.Fatalf("sample %+v", a)
	}
	if f := a.busyFraction(a); f != 0 {
		t.Fatalf("busy fraction over no time = %v", f)
	}
	if _, err := loadavg(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.setDefaults(); err == nil {
		t.Fatal("no conductor binary accepted")
	}
	c = Config{Conductor: "x", HeartbeatTimeout: 10 * time.Second}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.Agents != 1000 || c.Boot != 4500*time.Millisecond || c.Duration != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}
