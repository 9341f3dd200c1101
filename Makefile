# mod_log_ringbuffer: `make demo` shows it working, `make check` runs every test.
# Both install what is missing first (Debian bookworm, as root).

CARGO ?= cargo
LUA ?= lua5.4
DEPS ?= $(CURDIR)/.deps
# Prosody 0.12 and 13, unpacked there by scripts/setup-deps.sh (no system Prosody is used).
PROSODY012 := $(DEPS)/prosody012
PROSODY13 := $(DEPS)/prosody13
PLUGIN_DIR ?= $(CURDIR)/target/plugins
LIB := target/release/liblog_ringbuffer_native.so
export DEPS

.PHONY: all build deps install-plugin rock check lint test-rust test-lua test-e2e test-rockspec test-install test-install-all deb test-deb fuzz soak demo bench clean

all: build

deps:
	@scripts/setup-deps.sh

build: $(LIB)

$(LIB): Cargo.toml build.rs $(shell find src -name "*.rs")
	$(CARGO) build --release

# A plugin folder Prosody loads with plugin_paths = { "$(PLUGIN_DIR)" } alone.
install-plugin: build
	mkdir -p $(PLUGIN_DIR)/mod_log_ringbuffer
	install -m 0644 lua/mod_log_ringbuffer.lua $(PLUGIN_DIR)/mod_log_ringbuffer/mod_log_ringbuffer.lua
	install -m 0755 $(LIB) $(PLUGIN_DIR)/mod_log_ringbuffer/log_ringbuffer_native.so

# target/rocks/: a luarocks repository with a source rock that builds offline (the crates vendored
# into it) and its manifest, for `prosodyctl install --server=file://$(CURDIR)/target/rocks mod_log_ringbuffer`.
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

test-rust: deps
	$(CARGO) test --no-default-features --features lua54

# The Lua specs run against each Prosody version's own util libraries, and once more with the
# per-line path forced onto the Lua C API (LOG_RINGBUFFER_STACK=api), so both paths are tested.
test-lua: deps build
	PROSODY_SRC=$(PROSODY012)/usr/lib/prosody busted --lua=$(LUA) spec/unit
	PROSODY_SRC=$(PROSODY13)/usr/lib/prosody busted --lua=$(LUA) spec/unit
	LOG_RINGBUFFER_STACK=api PROSODY_SRC=$(PROSODY012)/usr/lib/prosody busted --lua=$(LUA) spec/unit
	LOG_RINGBUFFER_STACK=api PROSODY_SRC=$(PROSODY13)/usr/lib/prosody busted --lua=$(LUA) spec/unit

# In a temp dir of its own (the module installed there), on free ports: runs can overlap, and an
# interrupted run leaves no Prosody running and no files behind.
test-e2e: deps build
	LUA=$(LUA) scripts/run-e2e.sh
	LOG_RINGBUFFER_STACK=api LUA=$(LUA) scripts/run-e2e.sh

# The luarocks install, loaded by each Prosody version from the rocks tree.
test-rockspec: deps
	scripts/check-rockspec.sh "$(LUA) $(PROSODY012)/usr/bin/prosody"
	scripts/check-rockspec.sh "$(LUA) $(PROSODY13)/usr/bin/prosody"

# prosodyctl install, built offline, loaded and dumping, then prosodyctl remove: on 0.12 from
# `make rock`'s repository, on 13 from the .src.rock file (each install is a whole release build,
# so each way is tested once: `make test-install-all` does both ways on both versions).
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
FUZZ_SECONDS ?= 15
fuzz: deps
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	for target in format template; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target --fuzz-dir fuzz -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

check: deps
	$(MAKE) lint
	$(MAKE) test-rust
	$(MAKE) test-lua
	$(MAKE) test-e2e
	$(MAKE) test-rockspec
	$(MAKE) test-install
	$(MAKE) test-deb
	$(MAKE) fuzz

demo: deps
	$(MAKE) install-plugin PLUGIN_DIR=$(CURDIR)/target/demo-plugins
	LUA=$(LUA) scripts/demo.sh $(CURDIR)/target/demo-plugins "$(LUA) $(PROSODY012)/usr/bin/prosody"

# Speed and memory against the floor and the upstream algorithm, measured in one run.
bench: deps build
	bench/run.sh

# Minutes, not in make check: 50 million lines into a 1 MiB ring, dumped every 3 seconds.
soak: deps build
	$(LUA) bench/soak.lua

clean:
	$(CARGO) clean
