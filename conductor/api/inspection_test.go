package api

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/rivetmetal/rivet/conductor/store"
)

func TestContinueInspectionAndInventory(t *testing.T) {
	a := newTestAPI(t)
	inv := map[string]any{"interfaces": []any{map[string]any{"name": "eth0", "mac_address": "52:54:00:12:34:56"}},
		"memory": map[string]any{"physical_mb": 4096}}

	// The ramdisk posts without a version header (IPA's callback sets none).
	var out map[string]any
	st, _ := a.do("", "POST", "/v1/continue_inspection", map[string]any{"inventory": inv, "root_disk": map[string]any{"name": "/dev/vda"}}, &out)
	if st != http.StatusAccepted || out["uuid"] != "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11" {
		t.Fatalf("continue_inspection = %d %v", st, out)
	}
	st, _ = a.do("1.89", "POST", "/v1/continue_inspection?node_uuid=6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", map[string]any{"inventory": inv}, &out)
	if st != http.StatusAccepted || !slices.Contains(a.p.calls, "continue_inspection 6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11") {
		t.Fatalf("continue_inspection with node_uuid = %d %v (calls %v)", st, out, a.p.calls)
	}
	var body map[string]any
	st, _ = a.do("1.89", "POST", "/v1/continue_inspection", map[string]any{"nothing": true}, &body)
	a.fault("no inventory", st, body, http.StatusBadRequest, "The inspection data has no inventory")
	st, _ = a.do("1.83", "POST", "/v1/continue_inspection", map[string]any{"inventory": inv}, &body)
	a.fault("below 1.84", st, body, http.StatusNotFound, "Resource could not be found.")
	st, _ = a.do("1.89", "POST", "/v1/continue_inspection?node_uuid=nope", map[string]any{"inventory": inv}, &body)
	a.fault("bad node_uuid", st, body, http.StatusBadRequest, "Expected a UUID but received nope.")

	// The stored inventory is served from 1.81 on.
	n := a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware"})
	st, _ = a.do("1.89", "GET", "/v1/nodes/n1/inventory", nil, &body)
	a.fault("no inventory yet", st, body, http.StatusNotFound, "Inventory not found for node "+n["uuid"].(string)+".")
	err := a.st.WithNodeLock(context.Background(), "n1", func(tx store.Tx) error {
		tx.Node().SetInternal("inspection_inventory", inv)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if st, _ = a.do("1.89", "GET", "/v1/nodes/n1/inventory", nil, &got); st != 200 {
		t.Fatalf("inventory = %d %v", st, got)
	}
	if gi, _ := got["inventory"].(map[string]any); gi["memory"].(map[string]any)["physical_mb"] != float64(4096) || got["plugin_data"] == nil {
		t.Fatalf("inventory = %v", got)
	}
	st, _ = a.do("1.80", "GET", "/v1/nodes/n1/inventory", nil, &body)
	a.fault("inventory below 1.81", st, body, http.StatusNotFound, "")
}
