package api

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
)

func TestParseLookupQuery(t *testing.T) {
	const u = "6A5A3C8E-1D2B-4F6E-9A0C-2B7D8E9F0A11"
	many := make([]string, maxLookupAddresses+1)
	for i := range many {
		many[i] = fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff)
	}
	for _, c := range []struct {
		query   string
		macs    []string
		uuid    string
		invalid int
		err     string
	}{
		{query: "addresses=52:54:00:AA:bb:01", macs: []string{"52:54:00:aa:bb:01"}},
		{query: "addresses=52:54:00:aa:bb:01,+52:54:00:aa:bb:02&addresses=52:54:00:AA:BB:01",
			macs: []string{"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}},
		{query: "addresses=nope,52:54:00:aa:bb:01,,&node_uuid=" + u, macs: []string{"52:54:00:aa:bb:01"},
			uuid: strings.ToLower(u), invalid: 1},
		// node_uuid alone parses: the engine refuses it (no address).
		{query: "node_uuid=" + u, uuid: strings.ToLower(u)},
		{query: "addresses=nope", err: "At least one of 'addresses' and 'node_uuid'"},
		{query: "", err: "At least one of"},
		{query: "node_uuid=42&addresses=52:54:00:aa:bb:01", err: "Expected a UUID but received 42."},
		{query: "addresses=" + strings.Join(many, ","), err: "at most 256 MAC addresses"},
		{query: "addresses=" + strings.Join(many[:maxLookupAddresses], ",") + "&addresses=" + many[0],
			macs: many[:maxLookupAddresses]},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		lq, err := parseLookupQuery(q)
		if c.err != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%.60s: error %v, want %q", c.query, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(lq.macs, c.macs) || lq.nodeUUID != c.uuid || lq.invalid != c.invalid {
			t.Errorf("%.60s: %+v, %v", c.query, lq, err)
		}
	}
}

// FuzzLookupQuery feeds GET /v1/lookup query strings to the parser: it
// never panics, and what it accepts is bounded, normalised and usable.
func FuzzLookupQuery(f *testing.F) {
	for _, s := range []string{
		"addresses=52:54:00:aa:bb:01",
		"addresses=52:54:00:AA:BB:01,52:54:00:aa:bb:02&node_uuid=6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11",
		"node_uuid=6a5a3c8e1d2b4f6e9a0c2b7d8e9f0a11",
		"node_uuid={6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11}",
		"addresses=%00,%zz&addresses=,,,",
		"addresses=52:54:00:aa:bb:01&addresses=52:54:00:aa:bb:01;node_uuid=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw) // the server parses leniently too
		lq, err := parseLookupQuery(q)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		if len(lq.macs) == 0 && lq.nodeUUID == "" {
			t.Fatal("accepted a lookup with neither addresses nor node_uuid")
		}
		if len(lq.macs) > maxLookupAddresses || len(lq.shown) > 5 || lq.invalid < len(lq.shown) {
			t.Fatalf("bounds: %d macs, %d shown of %d invalid", len(lq.macs), len(lq.shown), lq.invalid)
		}
		seen := map[string]bool{}
		for _, m := range lq.macs {
			if n, ok := normalizeMAC(m); !ok || n != m || seen[m] {
				t.Fatalf("MAC %q not normalised or repeated", m)
			}
			seen[m] = true
		}
		if lq.nodeUUID != "" {
			if u, err := uuid.Parse(lq.nodeUUID); err != nil || u.String() != lq.nodeUUID {
				t.Fatalf("node_uuid %q not canonical", lq.nodeUUID)
			}
		}
	})
}
