package wire

import "encoding/json"

// ServiceSteps is the command_result of service.get_service_steps.
type ServiceSteps struct {
	ServiceSteps           map[string][]Step      `json:"service_steps"`
	HardwareManagerVersion HardwareManagerVersion `json:"hardware_manager_version"`
}

// ServiceStepResult is the command_result of execute_service_step.
type ServiceStepResult struct {
	ServiceResult json.RawMessage `json:"service_result"`
	ServiceStep   Step            `json:"service_step"`
}
