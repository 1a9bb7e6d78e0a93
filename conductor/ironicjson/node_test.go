package ironicjson

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

func testNode() *store.Node {
	return &store.Node{
		ID: 7, UUID: "1215c45f-5c01-4883-84e1-a2a82a7c8a52", Name: "n1", Driver: "fake-hardware",
		ProvisionState: statemachine.DeployWait, TargetProvisionState: statemachine.Active,
		DriverInfo: map[string]any{"ipmi_password": "hunter2", "deploy_kernel": "k",
			"nested": map[string]any{"redfish_password": "x"}},
		InstanceInfo: map[string]any{"image_source": "http://img/disk.raw",
			"image_url": "http://img/disk.raw", "configdrive": "H4sI..."},
		DriverInternalInfo: map[string]any{"agent_secret_token": "tok", "agent_url": "http://a:9999"},
		CreatedAt:          time.Date(2026, 11, 21, 10, 0, 5, 88239000, time.UTC),
	}
}

func TestNodeMasksSecrets(t *testing.T) {
	doc := Node(testNode(), Options{BaseURL: "http://127.0.0.1:6385"})
	di := doc["driver_info"].(map[string]any)
	if di["ipmi_password"] != "******" || di["deploy_kernel"] != "k" ||
		di["nested"].(map[string]any)["redfish_password"] != "******" {
		t.Errorf("driver_info = %v", di)
	}
	ii := doc["instance_info"].(map[string]any)
	if ii["image_url"] != "******" || ii["configdrive"] != "******" || ii["image_source"] != "http://img/disk.raw" {
		t.Errorf("instance_info = %v", ii)
	}
	dii := doc["driver_internal_info"].(map[string]any)
	if dii["agent_secret_token"] != "******" || dii["agent_url"] != "http://a:9999" {
		t.Errorf("driver_internal_info = %v", dii)
	}
	if doc["created_at"] != "2026-11-21T10:00:05.088239+00:00" {
		t.Errorf("created_at = %v", doc["created_at"])
	}
	if doc["updated_at"] != nil || doc["last_error"] != nil {
		t.Errorf("unset fields must be null: updated_at=%v last_error=%v", doc["updated_at"], doc["last_error"])
	}
	b, _ := json.Marshal(doc["links"])
	if string(b) != `[{"href":"http://127.0.0.1:6385/v1/nodes/1215c45f-5c01-4883-84e1-a2a82a7c8a52","rel":"self"},{"href":"http://127.0.0.1:6385/nodes/1215c45f-5c01-4883-84e1-a2a82a7c8a52","rel":"bookmark"}]` {
		t.Errorf("links = %s", b)
	}
	// The store's node must not have been changed by masking.
	n := testNode()
	Node(n, Options{})
	if n.DriverInfo["ipmi_password"] != "hunter2" {
		t.Error("masking modified the node")
	}
}

func TestNodeHidesNewerFields(t *testing.T) {
	doc := Node(testNode(), Options{Minor: 1})
	for _, f := range []string{"name", "driver_internal_info", "deploy_step", "shard", "states"} {
		if _, ok := doc[f]; ok {
			t.Errorf("field %q shown at 1.1", f)
		}
	}
	doc = Node(testNode(), Options{Minor: 82})
	for _, f := range []string{"name", "driver_internal_info", "deploy_step", "shard", "states", "traits"} {
		if _, ok := doc[f]; !ok {
			t.Errorf("field %q missing at 1.82", f)
		}
	}
}

func TestAgentNodeKeepsConfigdrive(t *testing.T) {
	doc := AgentNode(testNode(), "conductor-1")
	ii := doc["instance_info"].(map[string]any)
	if ii["configdrive"] != "H4sI..." || ii["image_url"] != "http://img/disk.raw" {
		t.Errorf("instance_info = %v", ii)
	}
	if doc["driver_internal_info"].(map[string]any)["agent_secret_token"] != "******" {
		t.Error("agent token not masked")
	}
	if doc["driver_info"].(map[string]any)["ipmi_password"] != "******" {
		t.Error("password not masked")
	}
	if doc["id"] != int64(7) || doc["created_at"] != "2026-11-21T10:00:05.088239" {
		t.Errorf("id=%v created_at=%v", doc["id"], doc["created_at"])
	}
	if _, ok := doc["links"]; ok {
		t.Error("agent node has links")
	}
}

// TestAgentNodeLeavesTheNodeAlone: masking the document, and replacing
// the top-level keys of its instance_info and driver_internal_info (as
// the conductor does with the configdrive), does not change the node.
func TestAgentNodeLeavesTheNodeAlone(t *testing.T) {
	n := testNode()
	token := n.DriverInternalInfo["agent_secret_token"]
	doc := AgentNode(n, "conductor-1")
	doc["instance_info"].(map[string]any)["configdrive"] = "******"
	doc["driver_internal_info"].(map[string]any)["agent_url"] = "changed"
	if n.InstanceInfo["configdrive"] != "H4sI..." {
		t.Errorf("node's configdrive = %v", n.InstanceInfo["configdrive"])
	}
	if n.DriverInternalInfo["agent_secret_token"] != token || token == "" || token == nil {
		t.Errorf("node's token = %v", n.DriverInternalInfo["agent_secret_token"])
	}
	if _, ok := n.DriverInternalInfo["agent_url"]; ok && n.DriverInternalInfo["agent_url"] == "changed" {
		t.Error("the document's driver_internal_info is the node's")
	}
	if n.DriverInfo["ipmi_password"] == "******" {
		t.Error("the node's password was masked")
	}
}

// TestAgentNodeFields checks the agent's node document against the API's:
// the same fields but the API's links and its few own, and Ironic's
// database fields instead; the same values but the masked dicts, the
// traits and the times (which the agent gets without a zone).
func TestAgentNodeFields(t *testing.T) {
	n := testNode()
	n.Properties = map[string]any{"root_device": map[string]any{"size": 10.0}}
	n.Traits = []string{"CUSTOM_A"}
	n.ProvisionUpdatedAt = n.CreatedAt.Add(time.Minute)
	agent, api := AgentNode(n, "conductor-1"), nodeDoc(n, Options{})
	apiOnly := map[string]bool{"links": true, "ports": true, "states": true, "portgroups": true, "volume": true,
		"chassis_uuid": true, "allocation_uuid": true, "conductor": true}
	agentOnly := map[string]bool{"id": true, "chassis_id": true, "allocation_id": true, "conductor_affinity": true}
	differ := map[string]bool{"driver_info": true, "driver_internal_info": true, "traits": true, "reservation": true,
		"created_at": true, "updated_at": true, "provision_updated_at": true}
	for k, v := range api {
		av, ok := agent[k]
		switch {
		case apiOnly[k]:
			if ok {
				t.Errorf("agent document has the API's %q", k)
			}
		case !ok:
			t.Errorf("agent document lacks %q", k)
		case !differ[k] && !reflect.DeepEqual(av, v):
			t.Errorf("%s: agent %v, API %v", k, av, v)
		}
	}
	for k := range agent {
		if _, ok := api[k]; !ok && !agentOnly[k] {
			t.Errorf("agent document has %q, which is neither the API's nor Ironic's database field", k)
		}
	}
	if agent["provision_updated_at"] != "2026-11-21T10:01:05.088239" || agent["reservation"] != "conductor-1" {
		t.Errorf("provision_updated_at %v, reservation %v", agent["provision_updated_at"], agent["reservation"])
	}
	if got := agent["traits"]; !reflect.DeepEqual(got, map[string]any{"objects": []any{map[string]any{"trait": "CUSTOM_A"}}}) {
		t.Errorf("traits = %v", got)
	}
}

// TestNodeDocumentsAreSized: the size nodeFields gives its map holds
// every key of the API's and the agent's documents, so that neither
// outgrows it.
func TestNodeDocumentsAreSized(t *testing.T) {
	n := testNode()
	ifaces := len(hardwaretype.Of(n.Driver, n.Interfaces))
	if got := len(nodeFields(n, shareDict, agentTime)) - ifaces; got != nodeFieldCount {
		t.Errorf("nodeFields sets %d fields besides the interfaces, nodeFieldCount is %d", got, nodeFieldCount)
	}
	for name, doc := range map[string]map[string]any{"API": Node(n, Options{Minor: MaxMinor}), "agent": AgentNode(n, "c")} {
		if extra := len(doc) - nodeFieldCount - ifaces; extra > extraDocKeys {
			t.Errorf("the %s document adds %d keys, more than extraDocKeys (%d)", name, extra, extraDocKeys)
		}
	}
}
