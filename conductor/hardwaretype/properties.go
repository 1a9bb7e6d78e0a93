package hardwaretype

import "maps"

// commonProperties are the driver_info keys every hardware type reads
// (the boot and deploy interfaces' properties in Ironic).
var commonProperties = map[string]string{
	"deploy_kernel":                "UUID (from Glance) of the deployment kernel; a path or an http(s) URL here. Defaults to the conductor's --deploy-kernel.",
	"deploy_ramdisk":               "UUID (from Glance) of the ramdisk with the agent; a path or an http(s) URL here. Defaults to the conductor's --deploy-ramdisk.",
	"kernel_append_params":         "Additional kernel parameters for the deploy ramdisk; %default% stands for the conductor's defaults. Optional.",
	"force_persistent_boot_device": "Whether to set the boot device persistently: Default, Always or Never. Optional.",
	"fast_track":                   "Whether to reuse a running agent for the next operation (true/false). Optional.",
	"deploy_iso":                   "Deploy ISO for virtual media boot; stored, not used by this conductor. Optional.",
	"external_http_url":            "External URL of the conductor's HTTP server for this node; stored, not used by this conductor. Optional.",
}

// typeProperties are each hardware type's own driver_info keys.
var typeProperties = map[string]map[string]string{
	"ipmi": {
		"ipmi_address":          "IP address or hostname of the node's BMC. Required.",
		"ipmi_port":             "Remote IPMI RMCP port (default 623). Optional.",
		"ipmi_username":         "Username of the BMC account. Optional.",
		"ipmi_password":         "Password of the BMC account. Optional.",
		"ipmi_priv_level":       "Privilege level: ADMINISTRATOR (default), OPERATOR, USER or CALLBACK. Optional.",
		"ipmi_protocol_version": "IPMI protocol version: 2.0 (default) or 1.5. Optional.",
		"ipmi_cipher_suite":     "IPMI 2.0 cipher suite number. Optional.",
		"ipmi_verify_ca":        "Accepted for Metal3; IPMI has no TLS. Optional.",
	},
	"redfish": {
		"redfish_address":   "The URL address to the Redfish controller (https://host[:port]). Required.",
		"redfish_system_id": "The canonical path to the ComputerSystem resource. Optional when the BMC has one system.",
		"redfish_username":  "User account with admin/server-profile access privilege. Required.",
		"redfish_password":  "User account password. Required.",
		"redfish_verify_ca": "Whether to verify the BMC's certificate (true/false) or a CA bundle path. Optional.",
		"redfish_auth_type": "Redfish HTTP client authentication method: basic, session or auto (default). Optional.",
	},
	"fake-hardware": {},
	"qemu": {
		"qemu_disk":        "The node's raw disk file on the conductor's host. Required.",
		"qemu_memory_mb":   "Memory of the VM in MiB (default 1024). Optional.",
		"qemu_cpus":        "vCPUs of the VM (default 1). Optional.",
		"qemu_boot_mode":   "uefi (default, OVMF) or bios (SeaBIOS). Optional.",
		"qemu_agent_port":  "Fixed host port forwarded to the agent's 9999. Optional.",
		"qemu_console_log": "Where the VM's serial console is written. Optional.",
		"qemu_boot":        "How a pxe boot device boots: kernel (default) or network. Optional.",
		"qemu_bridge":      "A Linux bridge for the VM's NIC instead of user networking. Optional.",
		"qemu_nic_model":   "Emulated NIC model (default virtio). Optional.",
		"qemu_disk_bus":    "Emulated disk bus (default virtio). Optional.",
	},
}

func init() { typeProperties["idrac"] = typeProperties["redfish"] }

// Properties are the driver_info keys a hardware type reads, with their
// descriptions (GET /v1/drivers/{name}/properties).
func (t *Type) Properties() map[string]string {
	out := maps.Clone(commonProperties)
	maps.Copy(out, typeProperties[t.Name])
	return out
}
