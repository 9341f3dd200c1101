# mod_log_ringbuffer: `make demo` shows it working, `make check` runs every test.
# Both install what is missing first (Debian bookworm, as root).

CARGO ?= cargo
# The Lua the library is built for: 5.1, 5.2, 5.3, 5.4 or jit (LuaJIT), e.g.
# `make build LUA_VERSION=5.3` (target/release/ then holds a library for Lua 5.3 only) and the
# interpreter that goes with it. The tests that run Prosody stay on 5.4 (Debian's Prosody's Lua);
# `make test-lua-versions` checks the formatter under every Lua.
LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
LUA_FEATURE := $(if $(filter jit,$(LUA_VERSION)),luajit,lua$(subst .,,$(LUA_VERSION)))
DEPS ?= $(CURDIR)/.deps
# luarocks always builds with CC=gcc, and zstd's build script reruns when CC changes: every cargo
# run here sees the same CC, so the rockspec and Debian package checks reuse `make build`'s work.
ifeq ($(origin CC),default)
CC := gcc
endif
export CC
# Prosody 0.11, 0.12, 13.0.1 and the newest 13.0.x, unpacked there by scripts/setup-deps.sh (no
# system Prosody is used).
PROSODY012 := $(DEPS)/prosody012
PROSODY13 := $(DEPS)/prosody13
PLUGIN_DIR ?= $(CURDIR)/target/plugins
LIB := target/release/liblog_ringbuffer_native.so
# The library for Prosody 0.11 (Lua 5.2) in the e2e runs: the debug build for Lua 5.2 that
# `make test-lua-versions` makes too (same target dir and settings: neither builds it twice).
LIB_LUA52 := target/lua-versions/lua52/liblog_ringbuffer_native.so
export DEPS

.PHONY: all build deps install-plugin install-plugin-lua52 rock check lint test-rust test-lua test-lua-versions test-e2e test-rockspec test-install test-install-all deb test-deb fuzz soak demo bench bench-server clean

all: build

deps:
	@scripts/setup-deps.sh

build: $(LIB)

# Cargo tells whether the library was built for another Lua: it is asked every time.
.PHONY: $(LIB)
$(LIB): Cargo.toml build.rs $(shell find src -name "*.rs")
	$(CARGO) build --release --no-default-features --features "$(LUA_FEATURE) module"

# A plugin folder Prosody loads with plugin_paths = { "$(PLUGIN_DIR)" } alone.
install-plugin: build
	mkdir -p $(PLUGIN_DIR)/mod_log_ringbuffer
	install -m 0644 lua/mod_log_ringbuffer.lua $(PLUGIN_DIR)/mod_log_ringbuffer/mod_log_ringbuffer.lua
	install -m 0644 lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua $(PLUGIN_DIR)/mod_log_ringbuffer/ringbuffer_shell.lib.lua
	install -m 0755 $(LIB) $(PLUGIN_DIR)/mod_log_ringbuffer/log_ringbuffer_native.so

# The same for Prosody 0.11 (Lua 5.2), with $(LIB_LUA52), into $(PLUGIN_DIR).
.PHONY: $(LIB_LUA52)
$(LIB_LUA52):
	CARGO_TARGET_DIR=$(CURDIR)/target/lua-versions CARGO_PROFILE_DEV_DEBUG=false CARGO_INCREMENTAL=0 \
		$(CARGO) build --quiet --no-default-features --features "lua52 module"
	mkdir -p $(dir $@)
	cp target/lua-versions/debug/liblog_ringbuffer_native.so $@
install-plugin-lua52: $(LIB_LUA52)
	mkdir -p $(PLUGIN_DIR)/mod_log_ringbuffer
	install -m 0644 lua/mod_log_ringbuffer.lua $(PLUGIN_DIR)/mod_log_ringbuffer/mod_log_ringbuffer.lua
	install -m 0644 lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua $(PLUGIN_DIR)/mod_log_ringbuffer/ringbuffer_shell.lib.lua
	install -m 0755 $(LIB_LUA52) $(PLUGIN_DIR)/mod_log_ringbuffer/log_ringbuffer_native.so

# target/rocks/: a luarocks repository with a source rock that builds offline (the crates vendored
# into it), a binary rock for this platform and their manifest, for
# `prosodyctl install --server=file://$(CURDIR)/target/rocks mod_log_ringbuffer` (luarocks takes the
# binary rock). The binary rock is packed from a build of the source rock with luarocks, offline,
# from the rock alone: that build (a release build, minutes) is the proof that the source rock builds.
rock:
	scripts/make-rock.sh

# target/debian/prosody-mod-log-ringbuffer_<version>-1_<arch>.deb: the module in Debian Prosody's
# own plugin directory, /usr/lib/prosody/modules/mod_log_ringbuffer/ (no plugin_paths needed).
deb: build
	scripts/make-deb.sh

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	luacheck lua spec bench

# In a mount namespace of its own: tests mount small tmpfs filesystems to fill them up for real.
test-rust: deps
	scripts/private-mounts.sh $(CARGO) test --no-default-features --features $(LUA_FEATURE)

# The library built for Lua 5.1, 5.2, 5.3, LuaJIT and 5.4 (debug builds sharing one target dir),
# each loaded by its own interpreter, formatting thousands of calls byte for byte as util.format
# does under that Lua.
test-lua-versions: deps
	scripts/test-lua-versions.sh

# The Lua specs run against each Prosody version's own util libraries, and once more with the
# per-line path forced onto the Lua C API (LOG_RINGBUFFER_STACK=api), so both paths are tested.
test-lua: deps build
	PROSODY_SRC=$(PROSODY012)/usr/lib/prosody busted --lua=$(LUA) spec/unit
	PROSODY_SRC=$(PROSODY13)/usr/lib/prosody busted --lua=$(LUA) spec/unit
	LOG_RINGBUFFER_STACK=api PROSODY_SRC=$(PROSODY012)/usr/lib/prosody busted --lua=$(LUA) spec/unit
	LOG_RINGBUFFER_STACK=api PROSODY_SRC=$(PROSODY13)/usr/lib/prosody busted --lua=$(LUA) spec/unit

# In a temp dir of its own (the module installed there), on free ports: runs can overlap, and an
# interrupted run leaves no Prosody running and no files behind. E2E_PROSODY picks the versions
# every spec loops over (spec/helpers/prosody.lua). Three passes:
# 1. every spec on 0.12 (the most deployed) and the newest 13.0.x (13.0.7: sid's Lua code over
#    13.0.1's C modules);
# 2. the per-line path forced onto the C API, on 13.0.1, for the specs whose path depends on it
#    (the smoke set among them); those of what happens after a line is stored (forwarding,
#    metrics, retention, dump files and shutdown, crashes, full disks, the ringbuffer/dumped
#    event, the shell's batched and cancelled reads) do not, and ran in pass 1;
# 3. on 0.11 (Lua 5.2): the smoke set (compat_spec: load, signal and event dumps, dump_on, a
#    reload storm, the console reads, a real-traffic dump byte for byte as the upstream
#    algorithm's, the build stamp) and module_spec (what the upstream README documents).
E2E_EXCLUDE_API := --exclude-pattern=forward_spec --exclude-pattern=collectors_spec --exclude-pattern=metrics_spec --exclude-pattern=retention_spec \
	--exclude-pattern=dump_path_spec --exclude-pattern=crash_spec --exclude-pattern=full_disk_spec \
	--exclude-pattern=stall_spec --exclude-pattern=dumped_event_spec --exclude-pattern=shell_reads_spec
# Two lanes at once (scripts/in-parallel.sh, output lines prefixed [1] and [2]): 0.12 then 0.11,
# and 13.0.7 then the C-API pass on 13.0.1. Each run has its own dir, ports and Prosody servers.
test-e2e: deps build
	scripts/in-parallel.sh \
		'E2E_PROSODY="0.12" LUA=$(LUA) scripts/run-e2e.sh && E2E_PROSODY="0.11" LUA=$(LUA) scripts/run-e2e.sh --pattern=compat_spec --pattern=module_spec' \
		'E2E_PROSODY="13-newest" LUA=$(LUA) scripts/run-e2e.sh && E2E_PROSODY="13" LOG_RINGBUFFER_STACK=api LUA=$(LUA) scripts/run-e2e.sh $(E2E_EXCLUDE_API)'

# The luarocks install, loaded by each Prosody version from the rocks tree. `luarocks make` builds
# into target/ too, but exports CC=gcc to cargo: after a `make build` without CC set, cargo reruns
# zstd-sys's build script and rebuilds the crates above it (about a minute of CPU).
test-rockspec: deps
	scripts/check-rockspec.sh "$(LUA) $(PROSODY012)/usr/bin/prosody"
	scripts/check-rockspec.sh "$(LUA) $(PROSODY13)/usr/bin/prosody"

# prosodyctl install of `make rock`'s binary rock (no build: `make rock` built it, offline, from
# the source rock), loaded and dumping, then prosodyctl remove: on 0.12 from the repository (where
# luarocks must pick the binary rock), on 13 from the binary rock file. `make test-install-all`
# does both on both versions, and the .src.rock file too (a release build in each version's prosodyctl).
test-install: deps
	$(MAKE) rock
	INSTALL_SOURCES=server scripts/check-install.sh "$(LUA) $(PROSODY012)/usr/bin/prosody"
	INSTALL_SOURCES=file scripts/check-install.sh "$(LUA) $(PROSODY13)/usr/bin/prosody"

test-install-all: deps
	$(MAKE) rock
	scripts/check-install.sh "$(LUA) $(PROSODY012)/usr/bin/prosody"
	scripts/check-install.sh "$(LUA) $(PROSODY13)/usr/bin/prosody"

# dpkg -i of `make deb`'s package into a throwaway root with its own dpkg database (the machine's
# is not touched), loaded and dumping in each Prosody version, then dpkg -r and -P.
test-deb: deps
	$(MAKE) deb
	scripts/check-deb.sh "$(LUA) $(PROSODY012)/usr/bin/prosody"
	scripts/check-deb.sh "$(LUA) $(PROSODY13)/usr/bin/prosody"

# cargo-fuzz on the formatter and the template renderer; the stable compiler is told to allow
# the sanitizer flags. `make fuzz FUZZ_SECONDS=600` for a real run; make check runs a smoke test.
# The smoke run in make check builds without AddressSanitizer (`FUZZ_SANITIZER=none`, half the
# build time): the targets are safe Rust, and a panic is found either way.
FUZZ_SECONDS ?= 15
FUZZ_SANITIZER ?= address
fuzz: deps
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	for target in format template; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer $(FUZZ_SANITIZER) $$target --fuzz-dir fuzz \
			-- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

check: deps
	$(MAKE) lint
	$(MAKE) test-rust
	$(MAKE) test-lua
	$(MAKE) test-lua-versions
	$(MAKE) test-e2e
	$(MAKE) test-rockspec
	$(MAKE) test-install
	$(MAKE) test-deb
	$(MAKE) fuzz FUZZ_SANITIZER=none

demo: deps
	$(MAKE) install-plugin PLUGIN_DIR=$(CURDIR)/target/demo-plugins
	LUA=$(LUA) scripts/demo.sh $(CURDIR)/target/demo-plugins "$(LUA) $(PROSODY012)/usr/bin/prosody"

# Speed and memory against the floor and the upstream algorithm, measured in one run.
bench: deps build
	bench/run.sh

# A real Prosody 0.12 and 13 routing c2s messages: throughput with debug capture on (~10 minutes).
bench-server: deps build
	scripts/bench-server.sh

# Minutes, not in make check: 50 million lines into a 1 MiB ring, dumped every 3 seconds.
soak: deps build
	$(LUA) bench/soak.lua

clean:
	$(CARGO) clean
