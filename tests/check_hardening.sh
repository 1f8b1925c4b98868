#!/bin/sh
# tests/check_hardening.sh - fail when a shipped telkin binary loses a hardening property.
#
#   tests/check_hardening.sh [BUILD_DIR]        (make hardening-test runs it; BUILD_DIR: build)
#
# Reads build/x86_64/telkin (required) and build/arm64/telkin (when present) with readelf,
# objdump and file, and prints one line per property: ok, FAIL, or note (a property the toolchain
# cannot give, reported rather than failed). The stack protector is checked on an unstripped
# twin, build/<arch>/telkin.unstripped, linked by tests/security.mk with the same compiler and
# flags but without -s; the twin's .text must be the shipped binary's, byte for byte, or the
# check fails (a twin that drifted from the real recipe proves nothing).
#
# Environment:
#   SIZE_LIMIT   bytes the stripped binary must stay under (default 307200, the design card's)
#   EXPECT_PIE   1: the binary must be a static PIE; 0: must not; auto (default): report only
set -u

BUILD=${1:-build}
SIZE_LIMIT=${SIZE_LIMIT:-307200}
EXPECT_PIE=${EXPECT_PIE:-auto}
failures=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok()   { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
note() { printf '  note  %s\n' "$*"; }

# objdump for the binary's architecture: the host's for x86_64, the cross one for arm64.
objdump_for() {
	case $1 in
	x86_64) command -v objdump ;;
	arm64) command -v aarch64-linux-gnu-objdump ;;
	esac
}

# The .text section's bytes (readelf -x would be slow to compare; objcopy is exact).
text_bytes() {
	objcopy_bin=$2
	"$objcopy_bin" -O binary --only-section=.text "$1" "$3" 2>/dev/null
}

check_binary() {
	arch=$1
	bin=$BUILD/$arch/telkin
	twin=$BUILD/$arch/telkin.unstripped
	case $arch in
	x86_64) machine='Advanced Micro Devices X86-64'; file_arch='x86-64' ;;
	arm64) machine='AArch64'; file_arch='ARM aarch64' ;;
	esac

	echo "== $bin"
	readelf -hW "$bin" > "$TMP/h" 2>&1 || { fail "readelf cannot read $bin"; return; }
	readelf -lW "$bin" > "$TMP/l" 2>&1
	readelf -dW "$bin" > "$TMP/d" 2>&1
	readelf -SW "$bin" > "$TMP/s" 2>&1
	readelf -nW "$bin" > "$TMP/n" 2>&1
	desc=$(file -b "$bin")

	# Architecture.
	if grep -q "Machine:.*$machine" "$TMP/h" && printf '%s' "$desc" | grep -q "$file_arch"; then
		ok "architecture: $file_arch"
	else
		fail "architecture: want $file_arch, file(1) says: $desc"
	fi

	# Static: no interpreter, no shared libraries.
	if grep -q 'INTERP' "$TMP/l"; then
		fail "static: has a PT_INTERP (program interpreter): $(grep -A1 INTERP "$TMP/l" | tail -1)"
	elif grep -q '(NEEDED)' "$TMP/d"; then
		fail "static: needs shared libraries: $(grep '(NEEDED)' "$TMP/d" | tr -s ' ')"
	elif printf '%s' "$desc" | grep -Eq 'statically linked|static-pie linked'; then
		ok "static: no PT_INTERP, no DT_NEEDED ($(printf '%s' "$desc" | grep -Eo 'static(ally|-pie) linked'))"
	else
		fail "static: file(1) says: $desc"
	fi

	# Stripped: no symbol table.
	if grep -q ' \.symtab ' "$TMP/s"; then
		fail "stripped: has a .symtab"
	elif printf '%s' "$desc" | grep -q 'not stripped'; then
		fail "stripped: file(1) says not stripped"
	else
		ok "stripped: no .symtab"
	fi

	# Size.
	size=$(stat -c %s "$bin")
	if [ "$size" -lt "$SIZE_LIMIT" ]; then
		ok "size: $size bytes < $SIZE_LIMIT"
	else
		fail "size: $size bytes, not under $SIZE_LIMIT"
	fi

	# Non-executable stack: GNU_STACK present, RW, never E.
	stack=$(awk '$1 == "GNU_STACK" { f = ""; for (i = 7; i < NF; i++) f = f $i; print f }' "$TMP/l")
	if [ -z "$stack" ]; then
		fail "GNU_STACK: absent (the kernel would default to an executable stack on some arches)"
	elif [ "$stack" = "RW" ]; then
		ok "GNU_STACK: RW (not executable)"
	else
		fail "GNU_STACK: flags '$stack', want RW"
	fi

	# W^X: no segment both writable and executable.
	wx=$(awk '$1 == "LOAD" { f = ""; for (i = 7; i < NF; i++) f = f $i; if (f ~ /W/ && f ~ /E/) print }' "$TMP/l")
	if [ -n "$wx" ]; then
		fail "W^X: a LOAD segment is writable and executable: $wx"
	else
		ok "W^X: no LOAD segment is both writable and executable"
	fi

	# RELRO.
	if grep -q 'GNU_RELRO' "$TMP/l"; then
		ok "GNU_RELRO: present"
	else
		fail "GNU_RELRO: absent"
	fi

	# PIE, and with it the dynamic section's BIND_NOW and no text relocations.
	etype=$(awk '/Type:/ { print $2; exit }' "$TMP/h")
	if [ "$etype" = "DYN" ]; then
		if grep -q 'FLAGS_1.*PIE' "$TMP/d"; then
			ok "PIE: ET_DYN with DF_1_PIE (static PIE: load address randomized)"
		else
			fail "PIE: ET_DYN without DF_1_PIE"
		fi
		if grep -Eq '\(FLAGS\).*BIND_NOW|FLAGS_1.*NOW' "$TMP/d"; then
			ok "BIND_NOW: DF_BIND_NOW / DF_1_NOW set (relocations done before main, RELRO sealed)"
		else
			fail "BIND_NOW: neither DF_BIND_NOW nor DF_1_NOW in the dynamic section"
		fi
		if grep -q 'TEXTREL' "$TMP/d"; then
			fail "TEXTREL: text relocations (the code pages would be made writable at start)"
		else
			ok "TEXTREL: none"
		fi
		[ "$EXPECT_PIE" = 0 ] && fail "PIE: EXPECT_PIE=0 but the binary is a PIE"
	else
		msg="ET_$etype: fixed load address; BIND_NOW n/a (no dynamic section, no lazy binding)"
		case $EXPECT_PIE in
		1) fail "PIE: $msg, but EXPECT_PIE=1" ;;
		*) note "PIE: $msg" ;;
		esac
	fi

	# Control-flow protection: the property note, and the instructions themselves.
	od=$(objdump_for "$arch")
	if [ -n "$od" ]; then
		"$od" -d "$bin" > "$TMP/dis" 2>/dev/null
	else
		: > "$TMP/dis"
		note "no objdump for $arch: instruction-level checks skipped"
	fi
	case $arch in
	x86_64)
		if grep -q 'x86 feature: IBT, SHSTK' "$TMP/n"; then
			ok "CET note: x86 feature: IBT, SHSTK"
		else
			note "CET note: absent (ld keeps it only when every input has it; musl's crt1.o," \
			     "crti.o, crtn.o and libc.a objects have none)"
		fi
		if [ -n "$od" ]; then
			n=$(grep -c 'endbr64' "$TMP/dis")
			if [ "$n" -gt 0 ]; then
				ok "-fcf-protection: $n endbr64 landing pads in the code"
			else
				fail "-fcf-protection: no endbr64 in the code (flag lost?)"
			fi
			n=$(grep -c 'mov.*%fs:0x28' "$TMP/dis")
			if [ "$n" -gt 0 ]; then
				ok "stack protector (shipped code): $n canary loads from %fs:0x28"
			else
				fail "stack protector (shipped code): no canary load from %fs:0x28"
			fi
		fi
		;;
	arm64)
		if grep -q 'AArch64 feature: BTI' "$TMP/n"; then
			ok "BTI note: $(grep -o 'AArch64 feature:.*' "$TMP/n")"
		else
			note "BTI/PAC note: absent (musl's crt objects and gcc-cross crtbeginS.o have none," \
			     "so ld drops it: BTI is not enforced; PAC needs no note)"
		fi
		if [ -n "$od" ]; then
			n=$(grep -Ec 'paciasp|hint[[:space:]]+#0x19' "$TMP/dis")
			if [ "$n" -gt 0 ]; then
				ok "-mbranch-protection: $n paciasp (return addresses signed)"
			else
				fail "-mbranch-protection: no paciasp in the code (flag lost?)"
			fi
			n=$(grep -Ec '[[:space:]]bti([[:space:]]|$)' "$TMP/dis")
			if [ "$n" -gt 0 ]; then
				ok "-mbranch-protection: $n bti landing pads"
			else
				fail "-mbranch-protection: no bti landing pad in the code"
			fi
		fi
		;;
	esac

	# Stack protector, on the unstripped twin.
	if [ ! -f "$twin" ]; then
		fail "stack protector: no $twin (make hardening-test links it)"
		return
	fi
	oc=objcopy
	[ "$arch" = arm64 ] && oc=aarch64-linux-gnu-objcopy
	if command -v "$oc" >/dev/null && text_bytes "$bin" "$oc" "$TMP/t1" &&
	   text_bytes "$twin" "$oc" "$TMP/t2"; then
		if cmp -s "$TMP/t1" "$TMP/t2"; then
			ok "twin: $twin has the shipped .text byte for byte"
		else
			fail "twin: $twin's .text differs from the shipped binary's (tests/security.mk" \
			     "no longer links like the Makefile)"
		fi
	else
		note "twin: no $oc to compare .text; comparing sizes"
		s1=$(readelf -SW "$bin" | awk '$2 == ".text" { print $6 }')
		s2=$(readelf -SW "$twin" | awk '$2 == ".text" { print $6 }')
		[ "$s1" = "$s2" ] && ok "twin: .text sizes match ($s1)" || fail "twin: .text $s2 vs $s1"
	fi
	nm "$twin" > "$TMP/nm" 2>/dev/null
	if grep -Eq ' [Tt] __stack_chk_fail$' "$TMP/nm"; then
		ok "stack protector: __stack_chk_fail linked in (pulled from libc.a only when referenced)"
	else
		fail "stack protector: __stack_chk_fail not in the twin: nothing is protected"
	fi
	if [ -n "$od" ]; then
		"$od" -d "$twin" > "$TMP/tdis" 2>/dev/null
		calls=$(grep -Ec '(call|bl)[[:space:]].*<__stack_chk_fail>' "$TMP/tdis")
		# Functions that contain at least one such call.
		fns=$(awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 } /<__stack_chk_fail>$/ && !/^[0-9a-f]+ </ { seen[fn] = 1 }
		          END { n = 0; for (f in seen) n++; print n }' "$TMP/tdis")
		mine=$(awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 } /<__stack_chk_fail>$/ && !/^[0-9a-f]+ </ { seen[fn] = 1 }
		           END { for (f in seen) print f }' "$TMP/tdis" |
		       grep -Ec '<(listener_|ingest_|http_|chunked_|hc_|kinesis_|config_|json_|sigv4_|api_|tls_|trust_|queue_|batch_|log_msg|main)')
		if [ "$calls" -gt 0 ] && [ "$mine" -gt 0 ]; then
			ok "stack protector: $calls __stack_chk_fail call sites in $fns functions" \
			   "($mine of them telkin's own parsers/handlers)"
		else
			fail "stack protector: $calls call sites, $mine in telkin's own functions"
		fi
	fi
	chk=$(grep -Ec ' [TtUu] __[a-z0-9_]+_chk$' "$TMP/nm")
	note "_FORTIFY_SOURCE: $chk fortified (__*_chk) functions: musl ships no fortified headers," \
	     "so -D_FORTIFY_SOURCE=2 has no effect on this binary"
}

if [ ! -f "$BUILD/x86_64/telkin" ]; then
	echo "FAIL: $BUILD/x86_64/telkin is missing (make build/x86_64/telkin)"
	exit 1
fi
check_binary x86_64
if [ -f "$BUILD/arm64/telkin" ]; then
	check_binary arm64
else
	echo "== $BUILD/arm64/telkin: not built, skipped (make arm64)"
fi

if [ "$failures" -gt 0 ]; then
	echo "hardening: $failures check(s) FAILED"
	exit 1
fi
echo "hardening: all checks passed"
