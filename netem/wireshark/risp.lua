-- RISP over UDP (risp-udp), wire version 3: a Wireshark dissector.
--
-- Load it for one run:   wireshark -X lua_script:netem/wireshark/risp.lua
--                        tshark -X lua_script:netem/wireshark/risp.lua -r FILE
-- or for good: copy it into the personal Lua plugins folder
-- (Help > About Wireshark > Folders > Personal Lua Plugins, usually
-- ~/.local/lib/wireshark/plugins/).
--
-- It decodes every datagram kind of docs/PROTOCOL.md: the client's
-- CONNECTING, CONNECTED, CLOSING and CLOSED (uuid, len, window, ack,
-- timestamp, rate, flags, token, selective-ack ranges, padding) and the
-- server's Accept, Data, Checksum, Closed, Challenge, Retry and Error. It
-- checks every CRC32C. A server datagram's CRC is keyed by the session's
-- UUID, which it does not carry: the dissector learns each client
-- address's UUID from its datagrams and tries that key first, then every
-- UUID seen so far; the key that checks out is shown as a generated
-- risp.uuid. A CRC that fails gets expert info (risp.crc.bad), as does any
-- malformed field. Registered on UDP port 8081 (a preference) and as a
-- heuristic on all UDP ports.
--
-- Fields (filter names): risp.version, risp.kind, risp.uuid, risp.len,
-- risp.window, risp.ack, risp.timestamp, risp.rate, risp.flags
-- (risp.flags.probe, risp.flags.abort), risp.token_len, risp.token,
-- risp.sack_len, risp.sack, risp.sack.range (risp.sack.low,
-- risp.sack.high), risp.sack.count, risp.pad_len, risp.padding,
-- risp.lifetime_ms, risp.max_window, risp.echo, risp.index, risp.payload,
-- risp.checksum, risp.challenge, risp.retry_token, risp.error.code,
-- risp.error.detail, risp.crc, risp.crc.computed, risp.crc.status.

local VERSION = 3
local DEFAULT_PORT = 8081

local risp = Proto("risp", "RISP over UDP")

-- Bit operations: bit32 in Lua 5.2 (Wireshark up to 4.2), the native
-- operators in Lua 5.3 and later.
local band, bxor, rshift
if bit32 then
    band, bxor, rshift = bit32.band, bit32.bxor, bit32.rshift
else
    band, bxor, rshift = load([[
        return function(a, b) return a & b end,
               function(a, b) return a ~ b end,
               function(a, n) return a >> n end
    ]])()
end

-- CRC32C (Castagnoli), reflected polynomial 0x82F63B78, table-driven.
local CRC_TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) == 1 then
            c = bxor(rshift(c, 1), 0x82F63B78)
        else
            c = rshift(c, 1)
        end
    end
    CRC_TABLE[i] = c
end

-- Continues a CRC32C (its inner register) over the bytes of string `s`.
local function crc_update(crc, s)
    for i = 1, #s do
        crc = bxor(rshift(crc, 8), CRC_TABLE[band(bxor(crc, s:byte(i)), 0xFF)])
    end
    return crc
end

-- CRC32C of the concatenation of the given strings.
local function crc32c(...)
    local crc = 0xFFFFFFFF
    for _, s in ipairs({ ... }) do
        crc = crc_update(crc, s)
    end
    return bxor(crc, 0xFFFFFFFF) % 4294967296
end

local KINDS = {
    [0x00] = "CONNECTING", [0x01] = "CONNECTED", [0x02] = "CLOSING", [0x03] = "CLOSED",
    [0x80] = "Accept", [0x81] = "Data", [0x82] = "Checksum", [0x83] = "Closed",
    [0x84] = "Challenge", [0x85] = "Retry", [0x8F] = "Error",
}
-- Length of each server kind's datagram.
local SERVER_LEN = {
    [0x80] = 32, [0x81] = 24, [0x82] = 24, [0x83] = 16, [0x84] = 24, [0x85] = 32, [0x8F] = 21,
}
local ERRORS = {
    [1] = "UnknownSession", [2] = "Busy", [3] = "LenTooLarge", [4] = "LenMismatch",
    [5] = "Unauthorized", [6] = "AckOutOfRange", [7] = "WrongVersion",
}
local CRC_STATUS = { [0] = "Bad", [1] = "Good", [2] = "Unverified" }
local MIN_CLIENT_LEN, MAX_DATAGRAM_LEN, MIN_CONNECTING_LEN = 54, 1472, 1200
local MAX_TOKEN_LEN, MAX_SACK_BYTES = 32, 1024

local f = risp.fields
f.magic = ProtoField.string("risp.magic", "Magic")
f.version = ProtoField.uint8("risp.version", "Version")
f.kind = ProtoField.uint8("risp.kind", "Kind", base.HEX, KINDS)
f.uuid = ProtoField.string("risp.uuid", "Session UUID")
f.len = ProtoField.uint32("risp.len", "Sequence length")
f.window = ProtoField.uint32("risp.window", "Window")
f.ack = ProtoField.uint32("risp.ack", "Ack (next index needed)")
f.timestamp = ProtoField.uint64("risp.timestamp", "Timestamp (us + 1)")
f.rate = ProtoField.uint32("risp.rate", "Pacing rate (datagrams/s)")
f.flags = ProtoField.uint8("risp.flags", "Flags", base.HEX)
f.probe = ProtoField.bool("risp.flags.probe", "Probe", 8, nil, 0x01)
f.abort = ProtoField.bool("risp.flags.abort", "Abort", 8, nil, 0x02)
f.token_len = ProtoField.uint8("risp.token_len", "Token length")
f.token = ProtoField.bytes("risp.token", "Token")
f.sack_len = ProtoField.uint16("risp.sack_len", "Ack ranges length")
f.sack = ProtoField.bytes("risp.sack", "Ack ranges")
f.range = ProtoField.string("risp.sack.range", "Range held")
f.low = ProtoField.uint32("risp.sack.low", "Lowest index")
f.high = ProtoField.uint32("risp.sack.high", "Highest index")
f.count = ProtoField.uint32("risp.sack.count", "Ranges")
f.pad_len = ProtoField.uint16("risp.pad_len", "Padding length")
f.padding = ProtoField.bytes("risp.padding", "Padding")
f.lifetime = ProtoField.uint32("risp.lifetime_ms", "Session lifetime (ms)")
f.max_window = ProtoField.uint32("risp.max_window", "Largest window honoured")
f.echo = ProtoField.uint64("risp.echo", "Echoed timestamp")
f.index = ProtoField.uint32("risp.index", "Index")
f.payload = ProtoField.uint32("risp.payload", "Value")
f.checksum = ProtoField.uint64("risp.checksum", "Checksum of the sequence")
f.challenge = ProtoField.bytes("risp.challenge", "Path challenge")
f.retry_token = ProtoField.bytes("risp.retry_token", "Retry token")
f.error_code = ProtoField.uint8("risp.error.code", "Error code", base.DEC, ERRORS)
f.error_detail = ProtoField.uint32("risp.error.detail", "Error detail")
f.crc = ProtoField.uint32("risp.crc", "CRC32C", base.HEX)
f.crc_computed = ProtoField.uint32("risp.crc.computed", "CRC32C computed", base.HEX)
f.crc_status = ProtoField.uint8("risp.crc.status", "CRC32C status", base.DEC, CRC_STATUS)

local e_bad_crc = ProtoExpert.new("risp.crc.bad", "Bad CRC32C", expert.group.CHECKSUM,
    expert.severity.ERROR)
local e_no_key = ProtoExpert.new("risp.crc.no_key",
    "CRC32C not checked: no client datagram of this session seen yet",
    expert.group.CHECKSUM, expert.severity.NOTE)
local e_malformed = ProtoExpert.new("risp.malformed", "Malformed RISP datagram",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_version = ProtoExpert.new("risp.other_version", "Another protocol version",
    expert.group.PROTOCOL, expert.severity.WARN)
risp.experts = { e_bad_crc, e_no_key, e_malformed, e_version }

risp.prefs.port = Pref.uint("UDP port", DEFAULT_PORT, "The server's UDP port")

-- What the first pass learnt: the session UUID (16 raw bytes) of each
-- client address, every UUID seen (a set and a list), and the key that
-- checked out for each server datagram (by frame number, so later passes
-- agree; false: none did).
local uuid_of_client, seen_uuids, uuid_list, key_of_frame = {}, {}, {}, {}

function risp.init()
    uuid_of_client, seen_uuids, uuid_list, key_of_frame = {}, {}, {}, {}
end

local function uuid_text(raw)
    local hex = raw:gsub(".", function(c) return string.format("%02x", c:byte()) end)
    return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-" .. hex:sub(13, 16) .. "-" ..
        hex:sub(17, 20) .. "-" .. hex:sub(21, 32)
end

local function address_key(addr, port)
    return tostring(addr) .. "|" .. tostring(port)
end

local function learn(pinfo, uuid)
    local key = address_key(pinfo.src, pinfo.src_port)
    uuid_of_client[key] = uuid
    if not seen_uuids[uuid] then
        seen_uuids[uuid] = true
        uuid_list[#uuid_list + 1] = uuid
    end
end

-- Adds the CRC items: `stored` is the trailer, `computed` what the bytes
-- give (nil: not checked).
local function add_crc(tree, tvb, computed)
    local at = tvb:len() - 4
    local stored = tvb(at, 4):uint()
    local item = tree:add(f.crc, tvb(at, 4))
    local status
    if computed == nil then
        status = 2
        item:add_proto_expert_info(e_no_key)
    else
        tree:add(f.crc_computed, tvb(at, 4), computed):set_generated()
        if computed == stored then
            status = 1
        else
            status = 0
            item:add_proto_expert_info(e_bad_crc, string.format(
                "Bad CRC32C: 0x%08x, expected 0x%08x", stored, computed))
        end
    end
    tree:add(f.crc_status, tvb(at, 4), status):set_generated()
    return status
end

-- Decodes the ack ranges at `off` (`n` bytes) after `ack`; returns the
-- number of ranges, or nil and adds expert info when they are malformed.
local function add_ranges(tree, tvb, off, n, ack)
    local pos, stop, low = off, off + n, nil
    local function varint()
        local value, shift = 0, 0
        while true do
            if pos >= stop or shift > 28 then return nil end
            local b = tvb(pos, 1):uint()
            pos = pos + 1
            value = value + band(b, 0x7F) * 2 ^ shift
            if band(b, 0x80) == 0 then break end
            shift = shift + 7
        end
        if value > 0xFFFFFFFF then return nil end
        return value
    end
    local count = 0
    while pos < stop do
        local start = pos
        local first, len = varint(), nil
        if first ~= nil then len = varint() end
        local hi
        if first ~= nil and len ~= nil then
            if low == nil then
                if first >= 1 then hi = ack + first end
            else
                hi = low - first - 1
            end
        end
        if hi == nil or hi > 0xFFFFFFFF or hi - len <= ack then
            tree:add_proto_expert_info(e_malformed, "Malformed ack ranges")
            return nil
        end
        local lo = hi - len
        local r = tree:add(f.range, tvb(start, pos - start), string.format("%u-%u", lo, hi))
        r:add(f.low, tvb(start, pos - start), lo)
        r:add(f.high, tvb(start, pos - start), hi)
        low, count = lo, count + 1
    end
    return count
end

-- A client datagram; returns a summary for the Info column.
local function dissect_client(tvb, pinfo, tree, kind)
    local n = tvb:len()
    local computed = crc32c(tvb:raw(0, n - 4))
    local uuid = tvb:raw(4, 16)
    tree:add(f.uuid, tvb(4, 16), uuid_text(uuid))
    tree:add(f.len, tvb(20, 4))
    tree:add(f.window, tvb(24, 4))
    tree:add(f.ack, tvb(28, 4))
    tree:add(f.timestamp, tvb(32, 8))
    tree:add(f.rate, tvb(40, 4))
    local flags = tree:add(f.flags, tvb(44, 1))
    flags:add(f.probe, tvb(44, 1))
    flags:add(f.abort, tvb(44, 1))
    local ack = tvb(28, 4):uint()
    local info = string.format("%s ack=%u win=%u", KINDS[kind], ack, tvb(24, 4):uint())
    if band(tvb(44, 1):uint(), 0x01) ~= 0 then info = info .. " PROBE" end
    if band(tvb(44, 1):uint(), 0xFC) ~= 0 then
        flags:add_proto_expert_info(e_malformed, "Reserved flag bits set")
    end
    local t = tvb(45, 1):uint()
    tree:add(f.token_len, tvb(45, 1))
    if t > MAX_TOKEN_LEN or 46 + t + 2 > n - 4 then
        tree:add_proto_expert_info(e_malformed, "Token too long or truncated")
        return info, add_crc(tree, tvb, computed), uuid
    end
    if t > 0 then tree:add(f.token, tvb(46, t)) end
    local off = 46 + t
    local s = tvb(off, 2):uint()
    tree:add(f.sack_len, tvb(off, 2))
    off = off + 2
    if s > MAX_SACK_BYTES or off + s + 2 > n - 4 then
        tree:add_proto_expert_info(e_malformed, "Ack ranges too long or truncated")
        return info, add_crc(tree, tvb, computed), uuid
    end
    if s > 0 then
        local sack = tree:add(f.sack, tvb(off, s))
        local count = add_ranges(sack, tvb, off, s, ack)
        if count then
            sack:add(f.count, tvb(off, s), count):set_generated()
            info = info .. string.format(" ranges=%u", count)
        end
    end
    off = off + s
    local p = tvb(off, 2):uint()
    tree:add(f.pad_len, tvb(off, 2))
    off = off + 2
    if off + p ~= n - 4 then
        tree:add_proto_expert_info(e_malformed, "Padding length does not match the datagram")
    elseif p > 0 then
        local pad = tree:add(f.padding, tvb(off, p))
        if tvb:raw(off, p):find("[^%z]") then
            pad:add_proto_expert_info(e_malformed, "Non-zero padding")
        end
    end
    if kind == 0x00 and n < MIN_CONNECTING_LEN then
        tree:add_proto_expert_info(e_malformed, "CONNECTING shorter than 1200 bytes")
    end
    return info, add_crc(tree, tvb, computed), uuid
end

-- The key of a server datagram's CRC: the UUID of the client it goes to,
-- else any UUID seen. Returns the UUID (raw) and the CRC it gives, or nil.
local function find_key(tvb, pinfo)
    local body = tvb:raw(0, tvb:len() - 4)
    local stored = tvb(tvb:len() - 4, 4):uint()
    local remembered = key_of_frame[pinfo.number]
    if remembered ~= nil then
        if remembered == false then return nil end
        return remembered, crc32c(remembered, body)
    end
    local first = uuid_of_client[address_key(pinfo.dst, pinfo.dst_port)]
    local found, crc = nil, nil
    if first ~= nil then
        found, crc = first, crc32c(first, body)
    end
    if crc ~= stored then
        for _, u in ipairs(uuid_list) do
            local c = crc32c(u, body)
            if c == stored then
                found, crc = u, c
                break
            end
        end
    end
    if not pinfo.visited then key_of_frame[pinfo.number] = found or false end
    return found, crc
end

-- A server datagram (its length already checked against its kind).
local function dissect_server(tvb, pinfo, tree, kind)
    local uuid, computed = find_key(tvb, pinfo)
    if uuid ~= nil then
        tree:add(f.uuid, uuid_text(uuid)):set_generated()
    end
    local info = KINDS[kind]
    if kind == 0x80 then
        tree:add(f.token, tvb(4, 8))
        tree:add(f.lifetime, tvb(12, 4))
        tree:add(f.max_window, tvb(16, 4))
        tree:add(f.echo, tvb(20, 8))
    elseif kind == 0x81 then
        tree:add(f.index, tvb(4, 4))
        tree:add(f.payload, tvb(8, 4))
        tree:add(f.echo, tvb(12, 8))
        info = string.format("Data index=%u", tvb(4, 4):uint())
    elseif kind == 0x82 then
        tree:add(f.checksum, tvb(4, 8))
        tree:add(f.echo, tvb(12, 8))
    elseif kind == 0x83 then
        tree:add(f.echo, tvb(4, 8))
    elseif kind == 0x84 then
        tree:add(f.challenge, tvb(4, 8))
        tree:add(f.echo, tvb(12, 8))
    elseif kind == 0x85 then
        tree:add(f.retry_token, tvb(4, 16))
        tree:add(f.echo, tvb(20, 8))
    else
        local code = tvb(4, 1):uint()
        local item = tree:add(f.error_code, tvb(4, 1))
        if ERRORS[code] == nil then
            item:add_proto_expert_info(e_malformed, "Unknown error code")
        end
        tree:add(f.error_detail, tvb(5, 4))
        tree:add(f.echo, tvb(9, 8))
        info = string.format("Error %s detail=%u", ERRORS[code] or tostring(code),
            tvb(5, 4):uint())
    end
    return info, add_crc(tree, tvb, computed)
end

-- Whether the bytes look like a RISP datagram (magic, a known kind, a
-- length that fits it).
local function looks_like_risp(tvb)
    local n = tvb:len()
    if n < 16 or n > MAX_DATAGRAM_LEN or tvb:raw(0, 2) ~= "RU" then return false end
    local kind = tvb(3, 1):uint()
    if tvb(2, 1):uint() ~= VERSION then
        -- Another version: only the prefix (and a client's UUID) is known.
        return kind < 0x04 or SERVER_LEN[kind] ~= nil
    end
    if kind < 0x04 then return n >= MIN_CLIENT_LEN end
    return SERVER_LEN[kind] == n
end

function risp.dissector(tvb, pinfo, tree)
    if not looks_like_risp(tvb) then return 0 end
    local n = tvb:len()
    pinfo.cols.protocol = "RISP"
    local subtree = tree:add(risp, tvb(0, n))
    subtree:add(f.magic, tvb(0, 2))
    local version = tvb(2, 1):uint()
    local vitem = subtree:add(f.version, tvb(2, 1))
    local kind = tvb(3, 1):uint()
    subtree:add(f.kind, tvb(3, 1))
    if version ~= VERSION then
        vitem:add_proto_expert_info(e_version, string.format(
            "Protocol version %u (this dissector decodes %u)", version, VERSION))
        if kind < 0x04 and n >= 20 then
            subtree:add(f.uuid, tvb(4, 16), uuid_text(tvb:raw(4, 16)))
        end
        pinfo.cols.info:set(string.format("RISP v%u %s", version, KINDS[kind] or "?"))
        return n
    end
    local info, status, uuid
    if kind < 0x04 then
        info, status, uuid = dissect_client(tvb, pinfo, subtree, kind)
        if status == 1 and not pinfo.visited then learn(pinfo, uuid) end
    else
        info, status = dissect_server(tvb, pinfo, subtree, kind)
    end
    if status == 0 then info = info .. " [BAD CRC]" end
    pinfo.cols.info:set(info)
    subtree:append_text(", " .. info)
    return n
end

local udp_port = DissectorTable.get("udp.port")
local registered_port = risp.prefs.port
udp_port:add(registered_port, risp)

function risp.prefs_changed()
    if registered_port ~= risp.prefs.port then
        udp_port:remove(registered_port, risp)
        registered_port = risp.prefs.port
        udp_port:add(registered_port, risp)
    end
end

-- As a heuristic on every UDP port: the prefix and length checks only.
risp:register_heuristic("udp", function(tvb, pinfo, tree)
    if not looks_like_risp(tvb) then return false end
    risp.dissector(tvb, pinfo, tree)
    return true
end)
