# mod_log_ringbuffer: `make demo` shows it working, `make check` runs every test.
# Both install what is missing first (Debian bookworm, as root).

CARGO ?= cargo
LUA ?= lua5.4
DEPS ?= $(CURDIR)/.deps
PLUGIN_DIR ?= $(CURDIR)/target/plugins
LIB := target/release/liblog_ringbuffer_native.so
export DEPS

.PHONY: all build deps install-plugin check lint test-rust test-lua test-e2e test-rockspec demo bench clean

all: build

deps:
	@scripts/setup-deps.sh

build: $(LIB)

$(LIB): Cargo.toml build.rs $(wildcard src/*.rs)
	$(CARGO) build --release

# A plugin folder Prosody loads with plugin_paths = { "$(PLUGIN_DIR)" } alone.
install-plugin: build
	mkdir -p $(PLUGIN_DIR)/mod_log_ringbuffer
	install -m 0644 lua/mod_log_ringbuffer.lua $(PLUGIN_DIR)/mod_log_ringbuffer/mod_log_ringbuffer.lua
	install -m 0755 $(LIB) $(PLUGIN_DIR)/mod_log_ringbuffer/log_ringbuffer_native.so

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	luacheck lua spec bench

test-rust: deps
	$(CARGO) test --no-default-features --features lua54

# The Lua specs run against each Prosody version's own util libraries.
test-lua: deps build
	PROSODY_SRC=/usr/lib/prosody busted --lua=$(LUA) spec/unit
	PROSODY_SRC=$(DEPS)/prosody13/usr/lib/prosody busted --lua=$(LUA) spec/unit

test-e2e: deps
	$(MAKE) install-plugin PLUGIN_DIR=$(CURDIR)/target/e2e-plugins
	busted --lua=$(LUA) spec/e2e

# The luarocks install, loaded by each Prosody version from the rocks tree.
test-rockspec: deps
	scripts/check-rockspec.sh prosody
	scripts/check-rockspec.sh "$(LUA) $(DEPS)/prosody13/usr/bin/prosody"

check: deps
	$(MAKE) lint
	$(MAKE) test-rust
	$(MAKE) test-lua
	$(MAKE) test-e2e
	$(MAKE) test-rockspec

demo: deps
	$(MAKE) install-plugin PLUGIN_DIR=$(CURDIR)/target/demo-plugins
	scripts/demo.sh $(CURDIR)/target/demo-plugins

# Speed and memory against the floor and the upstream algorithm, measured in one run.
bench: deps build
	bench/run.sh

clean:
	$(CARGO) clean
