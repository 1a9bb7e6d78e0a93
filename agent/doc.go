// Package agent is rivet-agent, a drop-in for the Ironic Python Agent: it
// waits for its NICs and disks, collects the hardware inventory (and posts
// it to an inspection callback), finds its node through lookup, serves
// IPA's command API (over HTTPS with a self-signed certificate under
// auto-TLS), heartbeats to the conductor, and looks the node up again when
// Ironic wipes its token at the end of an operation.
//
// Extensions and their commands, as IPA names them:
//
//   - standby: prepare_image, get_partition_uuids, sync, power_off, run_image
//   - deploy, clean, service: get_*_steps and execute_*_step, served by
//     the hardware managers (hardware/manager): the generic manager's
//     steps (write_image, erase_devices, erase_devices_metadata,
//     erase_devices_express, erase_pstore, clean_uefi_nvram) with IPA's
//     priorities and version, and those of Options.Managers
//   - image: install_bootloader (agent/bootloader)
//   - log: collect_system_logs (agent/logcollect)
//   - rescue: finalize_rescue; system: lockdown; poll: get_hardware_info
//
// Run wires it together; cmd/rivet-agent only builds the Config from the
// kernel command line and flags.
package agent
