package wire

import "encoding/json"

// InspectionData is what the agent POSTs to ipa-inspection-callback-url
// (ironic-inspector's /v1/continue, or Ironic's /v1/continue_inspection):
// the inventory, the disk chosen without hints, the logs and which
// collectors ran.
type InspectionData struct {
	// Inventory is IPA's hardware inventory (contract §5.1).
	Inventory json.RawMessage `json:"inventory"`
	// RootDisk is the inventory entry of the disk picked with no hints,
	// null when none qualifies.
	RootDisk json.RawMessage `json:"root_disk"`
	// BootInterface is the PXE MAC (deprecated, still read by old
	// inspectors).
	BootInterface string `json:"boot_interface,omitempty"`
	// Logs is a base64 tar.gz of the agent's logs (collector "logs").
	Logs          string                  `json:"logs,omitempty"`
	Configuration InspectionConfiguration `json:"configuration"`
	// Error is set when collecting failed.
	Error *string `json:"error"`
}

// InspectionConfiguration names the collectors and hardware managers.
type InspectionConfiguration struct {
	Collectors []string            `json:"collectors"`
	Managers   []InspectionManager `json:"managers"`
}

// InspectionManager is one hardware manager and its version.
type InspectionManager struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// InspectionResponse is the answer of the inspection callback; a uuid, when
// present, is the node to look up.
type InspectionResponse struct {
	UUID string `json:"uuid"`
}

// SystemLogs is the command_result of log.collect_system_logs.
type SystemLogs struct {
	// SystemLogs is a base64-encoded tar.gz.
	SystemLogs string `json:"system_logs"`
}
