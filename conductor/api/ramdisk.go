package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	segjson "github.com/segmentio/encoding/json"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/wire"
)

// API minor versions of the ramdisk endpoints (contract §3.2).
const (
	minorRamdisk      = 22
	minorAgentVersion = 36
	minorAgentToken   = 62
	minorVerifyCA     = 68
	minorAgentStatus  = 72
)

// maxLookupAddresses bounds the distinct MAC addresses one lookup may
// name (a machine's NICs; IPA sends one per interface).
const maxLookupAddresses = 256

// lookupQuery is a parsed GET /v1/lookup query.
type lookupQuery struct {
	// macs are the valid addresses, normalised, each once.
	macs []string
	// nodeUUID is the canonical node_uuid, "" when absent.
	nodeUUID string
	// invalid counts the addresses ignored as not MACs (Ironic ignores
	// them too); shown lists the first few.
	invalid int
	shown   []string
}

// parseLookupQuery reads a lookup query: addresses (comma-separated, the
// parameter repeatable; invalid MACs ignored) and node_uuid. It refuses a
// query with neither, a node_uuid that is not a UUID, and more than
// maxLookupAddresses distinct MACs. Whether the node_uuid may be used is
// the engine's call (it only narrows what the addresses match).
func parseLookupQuery(q url.Values) (lookupQuery, error) {
	var lq lookupQuery
	seen := map[string]bool{}
	for _, list := range q["addresses"] {
		for a := range strings.SplitSeq(list, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			mac, ok := normalizeMAC(a)
			if !ok {
				if lq.invalid++; len(lq.shown) < 5 {
					lq.shown = append(lq.shown, a)
				}
				continue
			}
			if seen[mac] {
				continue
			}
			if len(lq.macs) == maxLookupAddresses {
				return lookupQuery{}, errdefs.InvalidArgument("A lookup names at most %d MAC addresses.", maxLookupAddresses)
			}
			seen[mac] = true
			lq.macs = append(lq.macs, mac)
		}
	}
	if raw := q.Get("node_uuid"); raw != "" {
		u, err := uuid.Parse(raw)
		if err != nil {
			return lookupQuery{}, errdefs.InvalidArgument("Expected a UUID but received %s.", raw)
		}
		lq.nodeUUID = u.String()
	}
	if len(lq.macs) == 0 && lq.nodeUUID == "" {
		return lookupQuery{}, errdefs.InvalidArgument("At least one of 'addresses' and 'node_uuid' parameters is required")
	}
	return lq, nil
}

// lookup serves GET /v1/lookup?addresses=...&node_uuid=... (contract §3.3).
// The node is found by its ports' MACs; node_uuid only narrows the match.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorRamdisk {
		s.writeError(w, r, errdefs.NotFound("Resource could not be found."))
		return
	}
	lq, err := parseLookupQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if lq.invalid > 0 {
		s.log.Warn("lookup: invalid MAC addresses ignored", "count", lq.invalid, "first", lq.shown)
	}
	n, token, err := s.cfg.Ramdisk.Lookup(r.Context(), lq.macs, lq.nodeUUID, v.minor >= minorAgentToken)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// segmentio/encoding writes encoding/json's bytes in about half the
	// time; every booting agent's lookup carries its node document.
	body, err := segjson.Marshal(wire.LookupResponse{
		Node:   ironicjson.LookupNode(n, s.opts(r, v)),
		Config: s.lookupConfig(token),
	})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encode the lookup answer: %w", err))
	} else {
		body = append(body, '\n')
		err = r.Context().Err() // the client gave up while the node was looked up
	}
	if err == nil {
		// The length goes in the header, so the flush below sends the
		// whole answer, not the first chunk of a chunked one whose end
		// would take one more write after the handler.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if _, err = w.Write(body); err == nil {
			if err = http.NewResponseController(w).Flush(); errors.Is(err, http.ErrNotSupported) {
				err = nil
			}
		}
	}
	if err == nil || token == nil || *token == wire.Masked {
		return
	}
	// A token generated for an answer that did not reach the agent would
	// strand it: every later lookup would be answered "******". Take it
	// back, so that the agent's next lookup gets a new one.
	s.log.Warn("lookup answer not delivered; releasing its agent token", "node", n.UUID, "error", err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), releaseTimeout)
	defer cancel()
	if err := s.cfg.Ramdisk.ReleaseToken(ctx, n.UUID, *token); err != nil {
		s.log.Error("release of an undelivered agent token failed", "node", n.UUID, "error", err)
	}
}

// releaseTimeout bounds the write that takes back an undelivered agent
// token.
const releaseTimeout = 30 * time.Second

// lookupConfig is the config part of a lookup answer (Ironic 2023.1
// defaults).
func (s *Server) lookupConfig(token *string) wire.LookupConfig {
	bootloader := true
	return wire.LookupConfig{
		HeartbeatTimeout:            s.cfg.Ramdisk.HeartbeatTimeout().Seconds(),
		AgentToken:                  token,
		AgentTokenRequired:          true,
		Metrics:                     json.RawMessage(`{"backend":"noop","prepend_host":false,"prepend_uuid":false,"prepend_host_reverse":true,"global_prefix":null}`),
		MetricsStatsd:               json.RawMessage(`{"statsd_host":"localhost","statsd_port":8125}`),
		DisableDeepImageInspection:  false,
		PermittedImageFormats:       []string{"raw", "qcow2", "iso"},
		EnableBIOSBootloaderInstall: &bootloader,
	}
}

// heartbeat serves POST /v1/heartbeat/{ident} (contract §3.4): 202 with an
// empty body; processing is asynchronous.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorRamdisk {
		s.writeError(w, r, errdefs.NotFound("Resource could not be found."))
		return
	}
	var raw map[string]json.RawMessage
	if err := decodeBody(w, r, maxBody, &raw); err != nil {
		s.writeError(w, r, err)
		return
	}
	var hb wire.HeartbeatRequest
	fields := map[string]*string{"callback_url": &hb.CallbackURL, "agent_token": &hb.AgentToken,
		"agent_version": &hb.AgentVersion, "agent_verify_ca": &hb.AgentVerifyCA, "agent_status": &hb.AgentStatus,
		"agent_status_message": &hb.AgentStatusMessage}
	var unexpected []string
	for k, v := range raw {
		dst, ok := fields[k]
		if !ok {
			unexpected = append(unexpected, k)
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			s.writeError(w, r, errdefs.InvalidArgument("Invalid heartbeat: %s: %v", k, err))
			return
		}
	}
	if len(unexpected) > 0 {
		sort.Strings(unexpected)
		s.writeError(w, r, errdefs.InvalidArgument("Unexpected arguments: %s", strings.Join(unexpected, ", ")))
		return
	}
	var err error
	switch {
	case hb.CallbackURL == "":
		err = errdefs.InvalidArgument(`Missing argument: "callback_url"`)
	case hb.AgentVersion != "" && v.minor < minorAgentVersion:
		err = errdefs.InvalidArgument(`Field "agent_version" not recognised`)
	case (hb.AgentStatus != "" || hb.AgentStatusMessage != "") && v.minor < minorAgentStatus:
		err = errdefs.InvalidArgument(`Fields "agent_status" and "agent_status_message" not recognised.`)
	case hb.AgentVerifyCA != "" && v.minor < minorVerifyCA:
		err = errdefs.InvalidArgument(`Field "agent_verify_ca" not recognised in this version`)
	case hb.AgentStatus != "" && hb.AgentStatus != "start" && hb.AgentStatus != "end" && hb.AgentStatus != "error":
		err = errdefs.InvalidArgument("Agent status is invalid. Valid states are start,end,error.")
	}
	if err == nil {
		err = s.cfg.Ramdisk.Heartbeat(r.Context(), r.PathValue("ident"), hb)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// Versions of the inspection endpoints (Ironic 2023.2+).
const (
	minorInventory          = 81
	minorContinueInspection = 84
)

// maxInspectionBody caps inspection data: an inventory plus the agent's
// logs (base64 of a tar.gz).
const maxInspectionBody = 16 << 20

// continueInspection serves POST /v1/continue_inspection[?node_uuid=…]:
// the deploy ramdisk posts its inventory once at start when the kernel
// command line names this endpoint as ipa-inspection-callback-url. Like
// lookup it is a public ramdisk endpoint; the agent may not declare a
// version (IPA's inspection callback does not), so none is required. The
// answer names the node, which the agent then looks up.
func (s *Server) continueInspection(w http.ResponseWriter, r *http.Request, v version) {
	if r.Header.Get(wire.APIVersionHeader) != "" && v.minor < minorContinueInspection {
		s.writeError(w, r, errdefs.NotFound("Resource could not be found."))
		return
	}
	var data wire.InspectionData
	if err := decodeBody(w, r, maxInspectionBody, &data); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(data.Inventory) == 0 || string(data.Inventory) == "null" {
		s.writeError(w, r, errdefs.InvalidArgument("The inspection data has no inventory"))
		return
	}
	nodeUUID := r.URL.Query().Get("node_uuid")
	if nodeUUID != "" {
		u, err := uuid.Parse(nodeUUID)
		if err != nil {
			s.writeError(w, r, errdefs.InvalidArgument("Expected a UUID but received %s.", nodeUUID))
			return
		}
		nodeUUID = u.String()
	}
	n, err := s.cfg.Inspector.ContinueInspection(r.Context(), nodeUUID, data)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, wire.InspectionResponse{UUID: n.UUID})
}

// nodeInventory serves GET /v1/nodes/{ident}/inventory (1.81): the
// inventory and the plugin_data the last in-band inspection stored; 404
// before any inspection.
func (s *Server) nodeInventory(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorInventory {
		s.writeError(w, r, errdefs.NotFound("The requested version of the API is not supported for this resource."))
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	inv, ok := n.DriverInternalInfo["inspection_inventory"].(map[string]any)
	if !ok {
		s.writeError(w, r, errdefs.NotFound("Inventory not found for node %s.", n.UUID))
		return
	}
	pd, _ := n.DriverInternalInfo["inspection_plugin_data"].(map[string]any)
	if pd == nil {
		pd = map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"inventory": inv, "plugin_data": pd})
}
