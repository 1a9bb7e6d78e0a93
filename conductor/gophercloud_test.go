package conductor_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// TestGophercloudCompatibility drives a conductor with gophercloud's
// baremetal client (noauth, as Metal3 talks to Ironic) through a whole
// deploy: create node and port, manage, provide, deploy with a config
// drive, show, undeploy. The fake-hardware nodes boot the in-process fake
// agent, which really downloads and checksums the image.
func TestGophercloudCompatibility(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	client, err := noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: h.URL() + "/v1/"})
	if err != nil {
		t.Fatal(err)
	}
	client.Microversion = "1.89"

	node, err := nodes.Create(ctx, client, nodes.CreateOpts{
		Name:            "gc1",
		Driver:          "fake-hardware",
		DeployInterface: "direct",
		DriverInfo:      map[string]any{"fake_password": "not-shown"},
		Properties:      map[string]any{"memory_mb": 4096, "cpu_arch": "x86_64"},
	}).Extract()
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	if node.UUID == "" || node.Name != "gc1" || node.ProvisionState != "enroll" || node.DeployInterface != "direct" ||
		node.DriverInfo["fake_password"] != "******" {
		t.Fatalf("created node = %+v", node)
	}

	pxe := true
	port, err := ports.Create(ctx, client, ports.CreateOpts{NodeUUID: node.UUID, Address: conductortest.MAC, PXEEnabled: &pxe}).Extract()
	if err != nil {
		t.Fatalf("create port: %v", err)
	}
	if port.Address != conductortest.MAC || port.NodeUUID != node.UUID || !port.PXEEnabled {
		t.Fatalf("created port = %+v", port)
	}

	change := func(target nodes.TargetProvisionState, cd any) {
		t.Helper()
		if err := nodes.ChangeProvisionState(ctx, client, node.UUID, nodes.ProvisionStateOpts{Target: target, ConfigDrive: cd}).ExtractErr(); err != nil {
			t.Fatalf("provision %s: %v", target, err)
		}
	}
	wait := func(want string) *nodes.Node {
		t.Helper()
		for {
			n, err := nodes.Get(ctx, client, node.UUID).Extract()
			if err != nil {
				t.Fatalf("get node: %v", err)
			}
			if n.ProvisionState == want && n.TargetProvisionState == "" {
				return n
			}
			if n.TargetProvisionState == "" && n.ProvisionState != want {
				t.Fatalf("node settled in %q (last_error %q), want %q", n.ProvisionState, n.LastError, want)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %q (now %q)", want, n.ProvisionState)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	change(nodes.TargetManage, nil)
	wait("manageable")
	change(nodes.TargetProvide, nil)
	wait("available")

	sum := sha256.Sum256(h.Image())
	if _, err := nodes.Update(ctx, client, node.UUID, nodes.UpdateOpts{
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/instance_info/image_source", Value: h.URL() + "/images/disk.raw"},
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/instance_info/image_os_hash_algo", Value: "sha256"},
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/instance_info/image_os_hash_value", Value: hex.EncodeToString(sum[:])},
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/instance_info/image_disk_format", Value: "raw"},
	}).Extract(); err != nil {
		t.Fatalf("set instance_info: %v", err)
	}
	const configdrive = "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA" // gzip of a (non-empty) drive
	change(nodes.TargetActive, configdrive)
	active := wait("active")
	if active.PowerState != "power on" || active.LastError != "" || active.InstanceInfo["configdrive"] != "******" {
		t.Fatalf("deployed node = power %q, last_error %q, instance_info %v", active.PowerState, active.LastError, active.InstanceInfo)
	}
	if got := h.Agent().ImageInfo(); got == nil || got.Configdrive == nil || *got.Configdrive != configdrive {
		t.Fatalf("the agent did not get the config drive: %+v", got)
	}

	// Shown by name too, with Ironic's error format for unknown nodes.
	if n, err := nodes.Get(ctx, client, "gc1").Extract(); err != nil || n.UUID != node.UUID {
		t.Fatalf("get by name: %v %v", n, err)
	}
	_, err = nodes.Get(ctx, client, "no-such-node").Extract()
	var notFound gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &notFound) || notFound.Actual != http.StatusNotFound {
		t.Fatalf("get unknown node: %v", err)
	}

	change(nodes.TargetDeleted, nil)
	undeployed := wait("available")
	if undeployed.PowerState != "power off" || len(undeployed.InstanceInfo) != 0 {
		t.Fatalf("undeployed node = power %q, instance_info %v", undeployed.PowerState, undeployed.InstanceInfo)
	}

	var listed []nodes.Node
	pages, err := nodes.ListDetail(client, nodes.ListOpts{ProvisionState: "available"}).AllPages(ctx)
	if err == nil {
		listed, err = nodes.ExtractNodes(pages)
	}
	if err != nil || len(listed) != 1 || listed[0].UUID != node.UUID {
		t.Fatalf("list available: %v %v", listed, err)
	}
}
