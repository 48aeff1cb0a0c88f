# Staging for every test that runs Dovecot: sourced by tests/run-tests.sh,
# tests/e2e/run.sh and the sieve-test scenarios.
#
# Dovecot's unprivileged processes must read the plugin, but the checkout
# may be one they cannot enter (root's home, mode 700). So the built
# modules are copied into a scratch directory, $LG_STAGE:
#   sieve/             the Sieve plugin (sieve_plugin_dir of the test configs)
#   modules/settings/  Dovecot's settings modules plus ours (Dovecot 2.4)
#   modules/doveadm/   Dovecot's doveadm plugins plus ours
# Dovecot looks for settings modules and doveadm plugins only in its own
# module directory. lg_stage_exec shows it the staged ones there: in a
# private mount namespace, or, where none can be made (a chroot whose root
# is no mount point), by copying ours into Dovecot's directories for the
# length of the run.

LG_MODULEDIR=$(sed -n "s/^dovecot_moduledir=//p" \
	/usr/lib/dovecot/dovecot-config 2>/dev/null | tr -d "'\"")
: "${LG_MODULEDIR:=/usr/lib/dovecot/modules}"
LG_SIEVE_PLUGIN_SO=lib90_sieve_loopguard_plugin.so
LG_SETTINGS_SO=libsieve_loopguard_settings.so
LG_DOVEADM_SO=lib10_doveadm_loopguard_plugin.so

# Dovecot 2.4 or newer? Its configuration and plugin loading differ.
lg_dovecot_24()
{
	case "$(dovecot --version 2>/dev/null)" in
	2.[0-3].*) return 1 ;;
	*) return 0 ;;
	esac
}

# lg_stage BUILDDIR: fills a new $LG_STAGE from the build tree.
lg_stage()
{
	local builddir=$1 kind so
	LG_STAGE=$(mktemp -d /tmp/loopguard-stage.XXXXXX) || return 1
	chmod 0755 "$LG_STAGE"
	mkdir -p "$LG_STAGE/sieve" "$LG_STAGE/modules/settings" \
		"$LG_STAGE/modules/doveadm"
	cp "$builddir/src/.libs/$LG_SIEVE_PLUGIN_SO" "$LG_STAGE/sieve/" ||
		return 1
	for kind in settings doveadm; do
		for so in "$LG_MODULEDIR/$kind"/*.so; do
			[ -f "$so" ] && cp "$so" "$LG_STAGE/modules/$kind/"
		done
	done
	if lg_dovecot_24; then
		cp "$builddir/src/.libs/$LG_SETTINGS_SO" \
			"$LG_STAGE/modules/settings/" || return 1
	fi
	cp "$builddir/src/doveadm/.libs/$LG_DOVEADM_SO" \
		"$LG_STAGE/modules/doveadm/" || return 1
	chmod -R a+rX "$LG_STAGE"
	export LG_STAGE
}

# The names of our modules that lg_stage put under modules/KIND.
lg_stage_ours()
{
	case "$1" in
	settings) lg_dovecot_24 && echo "$LG_SETTINGS_SO" ;;
	doveadm) echo "$LG_DOVEADM_SO" ;;
	esac
}

# Copies our staged modules into Dovecot's directories, keeping any file
# they replace in $LG_STAGE/saved; lg_stage_uninstall puts it all back.
lg_stage_install()
{
	local kind so
	mkdir -p "$LG_STAGE/saved"
	for kind in settings doveadm; do
		for so in $(lg_stage_ours $kind); do
			if [ -e "$LG_MODULEDIR/$kind/$so" ]; then
				cp -p "$LG_MODULEDIR/$kind/$so" \
					"$LG_STAGE/saved/$kind-$so"
			fi
			cp "$LG_STAGE/modules/$kind/$so" "$LG_MODULEDIR/$kind/"
		done
	done
}

lg_stage_uninstall()
{
	local kind so
	for kind in settings doveadm; do
		for so in $(lg_stage_ours $kind); do
			if [ -e "$LG_STAGE/saved/$kind-$so" ]; then
				cp -p "$LG_STAGE/saved/$kind-$so" \
					"$LG_MODULEDIR/$kind/$so"
			else
				rm -f "$LG_MODULEDIR/$kind/$so"
			fi
		done
	done
}

# lg_stage_exec BUILDDIR CMD...: stages BUILDDIR and runs CMD where Dovecot
# sees the staged modules, then removes the stage. Returns CMD's status.
# Nested calls run CMD as it is.
lg_stage_exec()
{
	local builddir=$1 rc
	shift
	if [ -n "${LG_STAGE:-}" ]; then
		"$@"
		return
	fi
	lg_stage "$builddir" || { echo "FAIL: staging $builddir"; return 1; }
	if unshare -m true 2>/dev/null; then
		unshare -m sh -c '
			for kind in settings doveadm; do
				mount --bind "$LG_STAGE/modules/$kind" \
					"$0/$kind" || exit 1
			done
			exec "$@"' "$LG_MODULEDIR" "$@"
		rc=$?
	else
		trap 'lg_stage_uninstall; rm -rf "$LG_STAGE"; exit 130' INT TERM
		lg_stage_install
		"$@"
		rc=$?
		lg_stage_uninstall
		trap - INT TERM
	fi
	rm -rf "$LG_STAGE"
	unset LG_STAGE
	return $rc
}
