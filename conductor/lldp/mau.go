package lldp

// mauTypes names the operational MAU types of the 802.3 MAC/PHY TLV as
// Ironic does (RFC 4836's dot3MauType list, 0 to 53). Ironic reads no
// other: a TLV with a newer type (25G, 100G, …) is dropped whole, and so
// it is here, so that parsed_lldp holds the same keys.
var mauTypes = map[uint16]string{
	0: "Unknown", 1: "AUI", 2: "10BASE-5", 3: "FOIRL", 4: "10BASE-2",
	5: "10BASE-T duplex mode unknown", 6: "10BASE-FP", 7: "10BASE-FB",
	8: "10BASE-FL duplex mode unknown", 9: "10BROAD36",
	10: "10BASE-T half duplex", 11: "10BASE-T full duplex",
	12: "10BASE-FL half duplex", 13: "10BASE-FL full duplex",
	14: "100 BASE-T4",
	15: "100BASE-TX half duplex", 16: "100BASE-TX full duplex",
	17: "100BASE-FX half duplex", 18: "100BASE-FX full duplex",
	19: "100BASE-T2 half duplex", 20: "100BASE-T2 full duplex",
	21: "1000BASE-X half duplex", 22: "1000BASE-X full duplex",
	23: "1000BASE-LX half duplex", 24: "1000BASE-LX full duplex",
	25: "1000BASE-SX half duplex", 26: "1000BASE-SX full duplex",
	27: "1000BASE-CX half duplex", 28: "1000BASE-CX full duplex",
	29: "1000BASE-T half duplex", 30: "1000BASE-T full duplex",
	31: "10GBASE-X", 32: "10GBASE-LX4", 33: "10GBASE-R", 34: "10GBASE-ER",
	35: "10GBASE-LR", 36: "10GBASE-SR", 37: "10GBASE-W", 38: "10GBASE-EW",
	39: "10GBASE-LW", 40: "10GBASE-SW", 41: "10GBASE-CX4", 42: "2BASE-TL",
	43: "10PASS-TS", 44: "100BASE-BX10D", 45: "100BASE-BX10U", 46: "100BASE-LX10",
	47: "1000BASE-BX10D", 48: "1000BASE-BX10U", 49: "1000BASE-LX10",
	50: "1000BASE-PX10D", 51: "1000BASE-PX10U", 52: "1000BASE-PX20D", 53: "1000BASE-PX20U",
}
