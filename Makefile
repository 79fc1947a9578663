# Berth: the README's commands. `make demo` shows it working, `make test` runs every test (Docker
# ones included), `make bench` prints the benchmark tables, `make` builds, `make install` installs.
SWIFT ?= swift
SOCKET ?= /var/run/docker.sock
TEST_TIMEOUT ?= 1500
# e.g. BENCH_FLAGS='--only storm --storm-limits 1,2,4,256' or '--cycles 100'; `berth-bench --help` lists them.
BENCH_FLAGS ?=

.PHONY: all build engine image demo test bench install clean-test-containers
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc/berth
UNITDIR ?= /etc/systemd/system

all: build

# The release build's flags: scripts/release-build.sh.
RELEASE_BUILD = SWIFT=$(SWIFT) scripts/release-build.sh

build:
	$(RELEASE_BUILD)

# Packages and a running Docker engine (installs and starts them when root).
engine:
	@scripts/ensure-engine.sh

# berth-unit:latest, the default unit image, built here (no registry needed).
image: engine
	scripts/build-unit-image.sh

# A cluster on loopback, the esProc design's Employee example, and a clean exit.
demo:
	@scripts/demo.sh

# The abuse tests load the machine on purpose (login floods, hundreds of slow connections, 200 MB
# of output): they run after the others, alone, so the others' timing means what it says. The
# refusal timing test compares medians a few milliseconds apart: it runs last, on a quiet machine.
test: engine image
	$(SWIFT) build --build-tests
	timeout $(TEST_TIMEOUT) $(SWIFT) test --skip-build --skip AbuseTests --skip RefusalTimingTests
	timeout $(TEST_TIMEOUT) $(SWIFT) test --skip-build --filter AbuseTests
	timeout $(TEST_TIMEOUT) $(SWIFT) test --skip-build --filter RefusalTimingTests
	@$(MAKE) --no-print-directory clean-test-containers

bench: engine
	$(RELEASE_BUILD)
	@$(MAKE) --no-print-directory test-image
	@curl -sf --unix-socket $(SOCKET) http://docker/images/berth-unit:latest/json >/dev/null || $(MAKE) --no-print-directory image
	.build/release/berth-bench --socket $(SOCKET) $(BENCH_FLAGS)

# The busybox image the tests and benchmarks use, imported through the Engine API (no registry).
.PHONY: test-image
test-image:
	@if ! curl -sf --unix-socket $(SOCKET) http://docker/images/berth-test-busybox:latest/json >/dev/null; then \
		scripts/busybox-rootfs.sh /tmp/berth-test-rootfs.tar && \
		curl -sSf --unix-socket $(SOCKET) -X POST -H 'Content-Type: application/x-tar' --data-binary @/tmp/berth-test-rootfs.tar \
			'http://docker/images/create?fromSrc=-&repo=berth-test-busybox&tag=latest&changes=CMD%20%5B%22%2Fbin%2Fsh%22%5D' >/dev/null && \
		rm -f /tmp/berth-test-rootfs.tar; \
	fi

# Binaries, templates, documentation, systemd units, and sample configs (never over existing ones).
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/berth/templates $(DESTDIR)$(PREFIX)/share/berth/docs $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/templates
	install -m 755 .build/release/berth-agent .build/release/berth-manager .build/release/berth $(DESTDIR)$(PREFIX)/bin/
	install -m 644 Resources/templates/unit.json Resources/templates/esproc.json $(DESTDIR)$(PREFIX)/share/berth/templates/
	install -m 644 README.md CHANGELOG.md $(DESTDIR)$(PREFIX)/share/berth/
	install -m 644 docs/*.md $(DESTDIR)$(PREFIX)/share/berth/docs/
	install -m 644 Resources/templates/systemd/berth-agent.service Resources/templates/systemd/berth-manager.service $(DESTDIR)$(UNITDIR)/
	for f in docker_server.xml docker_user.xml; do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/$$f ] || install -m 640 Resources/templates/samples/$$f $(DESTDIR)$(SYSCONFDIR)/; \
	done
	for f in unit.json esproc.json; do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/templates/$$f ] || install -m 644 Resources/templates/$$f $(DESTDIR)$(SYSCONFDIR)/templates/; \
	done
	@echo "installed; next: edit $(SYSCONFDIR)/docker_server.xml (and docker_user.xml on the entry host), then"
	@echo "  systemctl daemon-reload && systemctl enable --now berth-agent   (every host)"
	@echo "  systemctl enable --now berth-manager                            (the entry host)"

# Tests label their containers berth.test; a killed run must not leave them behind.
clean-test-containers:
	@ids=$$(curl -sf --unix-socket $(SOCKET) 'http://docker/containers/json?all=1&filters=%7B%22label%22%3A%5B%22berth.test%22%5D%7D' | grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4); \
	for id in $$ids; do curl -sf -X DELETE --unix-socket $(SOCKET) "http://docker/containers/$$id?force=1" >/dev/null; done; true
