#!/usr/bin/env bash
# Generates jitd(8), jitctl(1) and jitd.yaml(5) from what already documents them, so nothing
# is written twice:
#   - jitd(8) and jitctl(1): help2man runs the built binaries' --help and --version (CLI11
#     prints every option from its definition in main.cpp); jitctl's subcommands come from
#     `jitctl SUBCOMMAND --help`; jitd(8) gets docs/operations.md (files, install, reload,
#     restarts, break-glass) as its OPERATION section, converted by go-md2man.
#   - jitd.yaml(5): docs/policy.md, the reference of the main config and the policy files,
#     converted by go-md2man.
# help2man rather than hand-written roff: the options cannot drift from the code. go-md2man
# rather than pandoc: a small Debian package that turns the docs' Markdown into man(7) roff.
# Usage: make-man.sh SOURCE_DIR JITD JITCTL OUTPUT_DIR VERSION   (called by CMake)
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 SOURCE_DIR JITD JITCTL OUTPUT_DIR VERSION" >&2; exit 2; }
source_dir=$1 jitd=$2 jitctl=$3 out=$4 version=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# markdown_to_roff TITLE_LINE MARKDOWN_FILE: roff of the Markdown body, without go-md2man's
# own .TH title (help2man's page already has one) when TITLE_LINE is empty. Links keep their
# text only, and tables become tagged paragraphs that fit 80 columns (tables-to-lists.py).
markdown_to_roff() {
  sed -E 's/\[([^]]*)\]\([^)]*\)/\1/g' "$2" >"$work/unlinked.md" &&
    go-md2man -in "$work/unlinked.md" | "$source_dir/packaging/man/tables-to-lists.py" \
      >"$work/converted" || return
  if [ -z "$1" ]; then sed '/^\.TH /d; /^\.nh$/d' "$work/converted"; else cat "$work/converted"; fi
}

# docs/operations.md as the OPERATION section of jitd(8): its title line is dropped, and each
# "##"/"###" heading becomes a subsection (.SS; go-md2man makes "##" a section, "###" and
# deeper a subsection).
sed -e '1{/^# /d}' -e 's/^##/###/' "$source_dir/docs/operations.md" >"$work/operations.md"
{
  printf '[DESCRIPTION]\n'
  printf 'jitd keeps management ports (SSH, RDP, WinRM, any port its policy names) closed with\n'
  printf 'nftables (or its own eBPF program) and opens a port for one source address or range,\n'
  printf 'for a limited time, when an authorised local user asks through its Unix socket (see\n'
  printf '\\fBjitctl\\fR(1)).\n'
  printf 'Policy and configuration: \\fBjitd.yaml\\fR(5).\n'
  printf '[OPERATION]\n'
  markdown_to_roff "" "$work/operations.md"
  printf '[SEE ALSO]\n\\fBjitctl\\fR(1), \\fBjitd.yaml\\fR(5), \\fBnft\\fR(8), \\fBsystemctl\\fR(1)\n'
} >"$work/jitd.h2m"
help2man --no-info --section=8 --source="jitd $version" \
  --name="just-in-time access to management ports, enforced by nftables" \
  --include="$work/jitd.h2m" "$jitd" >"$out/jitd.8"

{
  printf '[COMMANDS]\n'
  # Every subcommand main.cpp defines, in the order a grant lives through them.
  for command in grant list show extend approve deny revoke policy status doctor recommend \
    import-azure; do
    printf '.SS %s\n.nf\n' "$command"
    # Escape backslashes and leading dots so --help text is shown, not interpreted. Without
    # SSH_CONNECTION, so grant's --source default is not the build machine's SSH client.
    (unset SSH_CONNECTION; exec -a jitctl "$jitctl" "$command" --help) |
      sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'
    printf '.fi\n'
  done
  printf '[EXIT STATUS]\n'
  printf '.TP\n.B 0\nDone (for \\fBdoctor\\fR: no conflicting rules found; for \\fBrecommend\\fR: nothing to recommend).\n'
  printf '.TP\n.B 1\nRefused: by jitd, or a bad command line (then before any request).\n'
  printf '.TP\n.B 2\nNo usable reply from jitd (socket unreachable, unexpected reply).\n'
  printf '.TP\n.B 3\n\\fBdoctor\\fR found rules that may drop or admit protected ports; \\fBrecommend\\fR found\nunprotected management services or protected ports nothing listens on.\n'
  printf '[ENVIRONMENT]\n.TP\n.B SSH_CONNECTION\n'
  printf 'Inside an SSH session, the default of \\fB\\-\\-source\\fR: the client address.\n'
  printf '[SEE ALSO]\n\\fBjitd\\fR(8), \\fBjitd.yaml\\fR(5)\n'
} >"$work/jitctl.h2m"
help2man --no-info --section=1 --source="jitd $version" \
  --name="ask jitd for just-in-time access to a management port" \
  --include="$work/jitctl.h2m" "$jitctl" >"$out/jitctl.1"

# docs/policy.md as jitd.yaml(5): a NAME section for whatis/apropos, the document as
# DESCRIPTION (its title line replaced); under a title block go-md2man makes its "##"
# headings sections and its "###" headings subsections.
{
  printf '%% JITD.YAML 5 "" "jitd %s" "File Formats"\n\n' "$version"
  printf '# NAME\n\njitd.yaml - jitd main configuration and policy files\n\n'
  printf '# DESCRIPTION\n\n'
  sed -e '1{/^# /d}' "$source_dir/docs/policy.md"
  printf '\n# SEE ALSO\n\n**jitd**(8), **jitctl**(1)\n'
} >"$work/policy.md"
markdown_to_roff title "$work/policy.md" >"$out/jitd.yaml.5"
