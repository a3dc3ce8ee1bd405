package linkem

import "encoding/binary"

// IPv4 packet fields the relay reads and rewrites. It forwards what it
// cannot parse unchanged: only the NAT needs to look inside.
const (
	protoTCP = 6
	protoUDP = 17
)

// ports returns the transport ports of an IPv4 TCP or UDP packet, and the
// offset of its transport header; ok is false for anything else (and for
// fragments after the first, which carry no ports).
func ports(p []byte) (src, dst uint16, l4 int, proto byte, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return 0, 0, 0, 0, false
	}
	ihl := int(p[0]&0x0f) * 4
	proto = p[9]
	fragOff := binary.BigEndian.Uint16(p[6:8]) & 0x1fff
	if ihl < 20 || len(p) < ihl+8 || fragOff != 0 || (proto != protoTCP && proto != protoUDP) {
		return 0, 0, 0, 0, false
	}
	if proto == protoTCP && len(p) < ihl+20 {
		return 0, 0, 0, 0, false
	}
	return binary.BigEndian.Uint16(p[ihl:]), binary.BigEndian.Uint16(p[ihl+2:]), ihl, proto, true
}

// setPort rewrites the port at off (the source's or the destination's,
// relative to the transport header at l4) and patches the transport
// checksum incrementally (RFC 1624): the port is inside the sum, the
// addresses, which the pseudo-header brings in, do not change.
func setPort(p []byte, l4 int, proto byte, off int, port uint16) {
	old := binary.BigEndian.Uint16(p[l4+off:])
	binary.BigEndian.PutUint16(p[l4+off:], port)
	sumAt := l4 + 16
	if proto == protoUDP {
		sumAt = l4 + 6
		if binary.BigEndian.Uint16(p[sumAt:]) == 0 {
			return // no checksum (IPv4 allows it)
		}
	}
	sum := binary.BigEndian.Uint16(p[sumAt:])
	sum = csumUpdate(sum, old, port)
	if proto == protoUDP && sum == 0 {
		sum = 0xffff // 0 means "none" for UDP
	}
	binary.BigEndian.PutUint16(p[sumAt:], sum)
}

// csumUpdate is HC' = ~(~HC + ~m + m') in one's complement arithmetic.
func csumUpdate(hc, m, m2 uint16) uint16 {
	s := uint32(^hc) + uint32(^m) + uint32(m2)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// checksum is the Internet checksum of b, for tests.
func checksum(b []byte, initial uint32) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
