# mk/uv.mk - re-locking the tool requirements with hashes. Included by the Makefile and by mk/sam.mk
# (once: mk/sam.mk also runs alone, `make -f mk/sam.mk lock-sam`).
#
#   uv_lock           $(call uv_lock,IN,OUT,PYTHON-VERSION,TARGET): `uv pip compile` of IN into OUT,
#                     every distribution pinned with the sha256 of every file PyPI has for that
#                     version (each wheel and the sdist), so pip --require-hashes accepts whichever
#                     file it picks on any platform; universal (markers for other platforms and for
#                     Pythons from PYTHON-VERSION up). uv comes from PyPI into a temporary venv,
#                     itself installed with --require-hashes (requirements-uv.txt), and is removed
#                     afterwards: re-locking never needs the venvs it locks. pip and uv run with
#                     no configuration of this machine (pip --isolated, uv --no-config): the lock is
#                     PyPI's, whatever extra index or find-links the machine has.
#   lock-uv           re-lock requirements-uv.in (uv itself) into requirements-uv.txt.

ifndef UV_MK_INCLUDED
UV_MK_INCLUDED := 1

UV_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
PYPI_INDEX := https://pypi.org/simple
# Any python3 runs uv; the lock's own Python is PYTHON-VERSION.
UV_LOCK_PYTHON ?= $(shell command -v python3)

define uv_lock
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	"$(UV_LOCK_PYTHON)" -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip --isolated install --quiet --disable-pip-version-check \
		--index-url $(PYPI_INDEX) --require-hashes --no-deps -r "$(UV_ROOT)/requirements-uv.txt" && \
	cd "$(UV_ROOT)" && "$$tmp/venv/bin/uv" pip compile --no-config --index-url $(PYPI_INDEX) \
		--universal --python-version $(3) --generate-hashes --quiet --annotation-style line \
		--custom-compile-command "make $(4)" -o "$(2)" "$(1)" && \
	echo "wrote $(2) from $(1)"
endef

.PHONY: lock-uv

lock-uv: ## Re-lock uv, the locks' own tool (requirements-uv.in -> requirements-uv.txt, with hashes)
	$(call uv_lock,requirements-uv.in,requirements-uv.txt,3.11,lock-uv)

endif
