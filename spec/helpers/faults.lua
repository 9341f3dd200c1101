-- Real faults for the specs: a small tmpfs that can be filled up or remounted read-only.
-- Mounting is only done inside the private mount namespace scripts/private-mounts.sh makes
-- (scripts/run-e2e.sh runs busted in one), so nothing reaches the machine's own mounts.
local faults = {};

local function sh(command)
	local ok, _, code = os.execute(command);
	return ok == true or ok == 0, code;
end

local function check(command)
	local ok, code = sh(command);
	assert(ok, ("%s failed (exit %s)"):format(command, tostring(code)));
end

local function in_private_namespace()
	if os.getenv("LRB_PRIVATE_MOUNTS") ~= "1" then return false; end
	local f = io.popen("readlink /proc/self/ns/mnt /proc/1/ns/mnt");
	local mine, init = f:read("l"), f:read("l");
	f:close();
	return mine ~= nil and mine ~= init;
end

-- Mounts a tmpfs of `bytes` on `dir` (made if missing).
function faults.tmpfs(dir, bytes)
	assert(in_private_namespace(), "faults: run under scripts/private-mounts.sh (a mount namespace of its own)");
	check(("mkdir -p '%s'"):format(dir));
	check(("mount -t tmpfs -o size=%d,mode=0700 tmpfs '%s'"):format(bytes, dir));
end

-- Fills the filesystem of `dir` until it has no free block left (a file named `filler`).
function faults.fill(dir)
	sh(("dd if=/dev/zero of='%s/filler' bs=4096 2>/dev/null"):format(dir));
	local f = io.popen(("df --output=avail -B1 '%s' | tail -n 1"):format(dir));
	local avail = tonumber(f:read("l"));
	f:close();
	assert(avail == 0, "the filesystem still has room: " .. tostring(avail));
end

-- Frees the room `fill` took.
function faults.unfill(dir)
	check(("rm -f '%s/filler'"):format(dir));
end

-- Remounts the tmpfs on `dir` read-only (`mode` "ro") or writable again ("rw").
function faults.remount(dir, mode)
	check(("mount -o remount,%s '%s'"):format(mode, dir));
end

function faults.unmount(dir)
	sh(("umount -l '%s'"):format(dir));
end

return faults;
