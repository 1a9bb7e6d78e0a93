"""Run ironic-inspector's LLDP parser over golden.json's cases.

Reads the cases (JSON) on stdin and prints, for each, either
{"parsed": <the parser's name/value dictionary>} or {"error": "<exception>"}
when the parse stops with an exception, as Ironic's parse_lldp hook drives
the parser: each value unhexlified, TLVs the parser handles refused over
511 bytes (Ironic's check, which ironic-inspector 11 lacks), TLVs whose text
is not UTF-8 skipped, any other exception ending the hook.

The parser is Debian's python3-ironic-inspector; TestAgainstIronic runs this
with /usr/bin/python3.
"""
import binascii
import json
import logging
import sys

from ironic_inspector.common import lldp_parsers

MAX_VALUE_LEN = 511

logging.disable(logging.CRITICAL)


def parse(tlvs):
    parser = lldp_parsers.LLDPBasicMgmtParser(None)
    for tlv_type, tlv_value in tlvs:
        data = bytearray(binascii.a2b_hex(tlv_value))
        entry = parser.parser_map.get(tlv_type)
        if entry and entry[0] is not None and len(data) > MAX_VALUE_LEN:
            continue
        try:
            parser.parse_tlv(tlv_type, data)
        except UnicodeDecodeError:
            continue
    return parser.nv_dict


def main():
    out = []
    for case in json.load(sys.stdin):
        try:
            out.append({"parsed": parse(case["tlvs"])})
        except Exception as exc:  # the hook would stop here
            out.append({"error": "%s: %s" % (type(exc).__name__, exc)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
