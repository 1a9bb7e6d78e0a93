package api

import (
	"net/http"
	"sort"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// API minor versions of the management endpoints.
const (
	minorSoftPower = 27 // soft power off / soft reboot, "timeout"
)

// powerTargets are the targets PUT .../states/power accepts, with the
// minor version that introduced each.
var powerTargets = map[power.State]int{
	power.On: 1, power.Off: 1, power.Reboot: 1,
	power.SoftOff: minorSoftPower, power.SoftReboot: minorSoftPower,
}

// powerBody is the body of PUT /v1/nodes/{ident}/states/power.
type powerBody struct {
	Target  string `json:"target"`
	Timeout *int   `json:"timeout"`
}

// setPowerState serves PUT /v1/nodes/{ident}/states/power: validated
// here, carried out in the background by the engine (202).
func (s *Server) setPowerState(w http.ResponseWriter, r *http.Request, v version) {
	var body powerBody
	if err := decodeBody(w, r, maxBody, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	ident := r.PathValue("ident")
	target := power.State(body.Target)
	minor, known := powerTargets[target]
	switch {
	case body.Target == "":
		s.writeError(w, r, errdefs.InvalidArgument(`Missing argument: "target"`))
		return
	case (known && v.minor < minor) || (body.Timeout != nil && v.minor < minorSoftPower):
		s.writeError(w, r, errdefs.NotAcceptable("Request not acceptable."))
		return
	case body.Timeout != nil && *body.Timeout < 1:
		s.writeError(w, r, errdefs.InvalidArgument("Invalid timeout value %d. The timeout must be a positive integer.", *body.Timeout))
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), ident)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !known {
		s.writeError(w, r, errdefs.InvalidArgument(`The requested action "%s" can not be performed on node "%s" while it is in state "%s".`,
			body.Target, ident, n.PowerState))
		return
	}
	var timeout time.Duration
	if body.Timeout != nil {
		timeout = time.Duration(*body.Timeout) * time.Second
	}
	if err := s.cfg.Power.ChangePowerState(r.Context(), n.UUID, target, timeout); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("power state change requested", "node", n.UUID, "target", string(target))
	w.Header().Set("Location", s.baseURL(r)+"/v1/nodes/"+ident+"/states")
	w.WriteHeader(http.StatusAccepted)
}

// bootDevices are the boot devices Ironic's API knows
// (ironic.common.boot_devices).
var bootDevices = map[power.BootDevice]bool{"pxe": true, "disk": true, "cdrom": true,
	"bios": true, "safe": true, "wanboot": true, "floppy": true, "uefihttp": true}

// bootDeviceBody is the body of PUT .../management/boot_device.
type bootDeviceBody struct {
	BootDevice string `json:"boot_device"`
	Persistent bool   `json:"persistent"`
}

// setBootDevice serves PUT /v1/nodes/{ident}/management/boot_device
// (synchronous, 204).
func (s *Server) setBootDevice(w http.ResponseWriter, r *http.Request, v version) {
	var body bootDeviceBody
	if err := decodeBody(w, r, maxBody, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	dev := power.BootDevice(body.BootDevice)
	if body.BootDevice == "" {
		s.writeError(w, r, errdefs.InvalidArgument(`Missing argument: "boot_device"`))
		return
	}
	if !bootDevices[dev] {
		s.writeError(w, r, errdefs.InvalidArgument("Invalid boot device %s, valid devices are %s.", dev, sortedDevices()))
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Power.SetNodeBootDevice(r.Context(), n.UUID, dev, body.Persistent); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("boot device set", "node", n.UUID, "boot_device", string(dev), "persistent", body.Persistent)
	w.WriteHeader(http.StatusNoContent)
}

// getBootDevice serves GET /v1/nodes/{ident}/management/boot_device.
func (s *Server) getBootDevice(w http.ResponseWriter, r *http.Request, v version) {
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dev, persistent, err := s.cfg.Power.NodeBootDevice(r.Context(), n.UUID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body := map[string]any{"boot_device": nil, "persistent": nil}
	if dev != "" {
		body["boot_device"], body["persistent"] = string(dev), persistent
	}
	writeJSON(w, http.StatusOK, body)
}

// supportedBootDevices serves GET
// /v1/nodes/{ident}/management/boot_device/supported.
func (s *Server) supportedBootDevices(w http.ResponseWriter, r *http.Request, v version) {
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	devs, err := s.cfg.Power.NodeSupportedBootDevices(r.Context(), n.UUID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = string(d)
	}
	writeJSON(w, http.StatusOK, map[string]any{"supported_boot_devices": out})
}

// maintenanceBody is the optional body of PUT .../maintenance.
type maintenanceBody struct {
	Reason *string `json:"reason"`
}

// setMaintenance serves PUT (on, with an optional reason) and DELETE (off)
// /v1/nodes/{ident}/maintenance; both answer 202 as Ironic does.
func (s *Server) setMaintenance(on bool) func(http.ResponseWriter, *http.Request, version) {
	return func(w http.ResponseWriter, r *http.Request, v version) {
		var body maintenanceBody
		if on && r.ContentLength != 0 {
			if err := decodeBody(w, r, maxBody, &body); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		var uuid string
		err := s.cfg.Store.WithNodeLock(r.Context(), r.PathValue("ident"), func(tx store.Tx) error {
			n := tx.Node()
			uuid = n.UUID
			n.Maintenance = on
			n.MaintenanceReason = ""
			if on && body.Reason != nil {
				n.MaintenanceReason = *body.Reason
			}
			return nil
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("maintenance changed", "node", uuid, "maintenance", on)
		w.WriteHeader(http.StatusAccepted)
	}
}

// validateNode serves GET /v1/nodes/{ident}/validate: one {result,
// reason} entry per hardware interface.
func (s *Server) validateNode(w http.ResponseWriter, r *http.Request, v version) {
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.cfg.Provisioner.ValidateNode(r.Context(), n.UUID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make(map[string]any, len(res))
	for iface, val := range res {
		entry := map[string]any{"result": nil, "reason": nil}
		if val.Result != nil {
			entry["result"] = *val.Result
		}
		if val.Reason != "" {
			entry["reason"] = val.Reason
		}
		out[iface] = entry
	}
	writeJSON(w, http.StatusOK, out)
}

func sortedDevices() []string {
	out := make([]string, 0, len(bootDevices))
	for d := range bootDevices {
		out = append(out, string(d))
	}
	sort.Strings(out)
	return out
}

// transient reports whether a node is in a state whose operation owns it
// (Ironic's NodeLocked for API updates).
func transient(n *store.Node) bool {
	return !statemachine.IsStable(n.ProvisionState) && !statemachine.AgentWait[n.ProvisionState]
}
