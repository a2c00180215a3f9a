# The changes' baseline, run in the machine by `/bin/sh` (see workspace.rs).
# $1 the operation, $2 the private git dir, $3 the folders the baseline
# covers (absolute, no spaces), then the operation's own arguments:
#   take LABEL ONLY_IF_NONE  snapshot the covered folders as the baseline
#                            (the first, labelled `start`, is also kept for
#                            good as refs/firepit/start)
#   undo                     puts the baseline before the last `take` back
#   diff DIR MAX_NEW SINCE   what differs in DIR (widened to its repository's
#                            top) from the baseline (SINCE `start`: from the
#                            session's start); without one, from HEAD
# Nothing here writes to a user's repository: the snapshots go through
# temporary and private index files into the private git dir only.
op=$1; G=$2; roots=$3; shift 3
export GIT_LITERAL_PATHSPECS=1
command -v git >/dev/null 2>&1 || { echo nogit; exit 0; }

# key PATH: a file name for PATH's index.
key() { printf '%s' "$1" | git hash-object --stdin; }

# snap_one WORKTREE IDX_IN IDX_OUT: the tree of WORKTREE's files (not
# ignored; nested repositories as gitlinks), hashed with IDX_IN's stat cache.
snap_one() {
  k=$(key "$1") || return 1
  [ -f "$2/$k" ] && cp -p "$2/$k" "$3/$k"
  (cd -- "$1" && GIT_DIR=$G GIT_WORK_TREE=$1 GIT_INDEX_FILE=$3/$k \
    git -c advice.addEmbeddedRepo=false add -A --ignore-errors . >/dev/null 2>&1)
  GIT_DIR=$G GIT_INDEX_FILE=$3/$k git write-tree
}

# comb ARGS: git on the combined index (read-tree wants a work tree: an
# empty folder, never written).
comb() { GIT_DIR=$G GIT_WORK_TREE=$out/empty GIT_INDEX_FILE=$out/combined git "$@"; }

# snapshot IDX_IN IDX_OUT ROOT...: one tree of the ROOTs' files, at their
# paths under /, with each git repository nested in them taken by itself
# (with its own ignore rules) where its gitlink is.
snapshot() {
  in=$1; out=$2; shift 2
  rm -f "$out/combined"
  mkdir -p -- "$out/empty" || return 1
  for r in "$@"; do
    [ -d "$r" ] || continue
    t=$(snap_one "$r" "$in" "$out") || return 1
    comb read-tree --prefix="${r#/}/" "$t" || return 1
    find "$r" -xdev -mindepth 2 -maxdepth 5 -name .git -prune -print 2>/dev/null |
      head -n 100 | sed 's,/\.git$,,' | LC_ALL=C sort |
      while IFS= read -r p; do
        rel=${p#/}
        comb ls-files -s -- "$rel" | grep -q '^160000' || continue
        t=$(snap_one "$p" "$in" "$out") || continue
        comb update-index --force-remove -- "$rel" && comb read-tree --prefix="$rel/" "$t"
      done
  done
  comb write-tree
}

# keep_start: the session's start for good, as refs/firepit/start (set
# once, never moved; what it holds is never pruned). A private dir from
# before that ref gets its `start`-labelled baseline while one is there.
keep_start() {
  GIT_DIR=$G git rev-parse -q --verify refs/firepit/start >/dev/null 2>&1 && return 0
  for r in refs/firepit/baseline refs/firepit/previous; do
    c=$(GIT_DIR=$G git rev-parse -q --verify "$r^{commit}" 2>/dev/null) || continue
    [ "$(GIT_DIR=$G git log -1 --format=%s "$c")" = start ] || continue
    GIT_DIR=$G git update-ref refs/firepit/start "$c"
    return
  done
  return 0
}

case $op in
take)
  label=$1; only_if_none=$2
  if [ "$only_if_none" = 1 ] && GIT_DIR=$G git rev-parse -q --verify refs/firepit/baseline >/dev/null 2>&1; then
    keep_start
    echo kept; exit 0
  fi
  if [ ! -f "$G/HEAD" ]; then
    mkdir -p -- "$G" && git init -q --bare --template= -- "$G" >/dev/null || exit 1
  fi
  mkdir -p -- "$G/info" && printf '%s\n' node_modules/ .cache/ .npm/ .rustup/ \
    .cargo/registry/ .cargo/git/ .local/lib/ __pycache__/ .venv/ > "$G/info/exclude"
  rm -rf -- "$G/idx.new" && mkdir -- "$G/idx.new" && mkdir -p -- "$G/idx" || exit 1
  # shellcheck disable=SC2086 # the roots are words
  tree=$(snapshot "$G/idx" "$G/idx.new" $roots) || exit 1
  commit=$(printf '%s\n' "$label" | GIT_DIR=$G git commit-tree --no-gpg-sign "$tree") || exit 1
  old=$(GIT_DIR=$G git rev-parse -q --verify refs/firepit/baseline) || old=
  keep_start
  [ -n "$old" ] && GIT_DIR=$G git update-ref refs/firepit/previous "$old"
  GIT_DIR=$G git update-ref refs/firepit/baseline "$commit" || exit 1
  keep_start || exit 1
  rm -rf -- "$G/idx" && mv -- "$G/idx.new" "$G/idx"
  # Many loose objects (a file system block each) go into one pack, and
  # what neither this baseline, the one before nor the start holds goes.
  loose=$(GIT_DIR=$G git count-objects | cut -d' ' -f1)
  [ "${loose:-0}" -gt 1000 ] 2>/dev/null && GIT_DIR=$G git repack -a -d -q >/dev/null 2>&1
  [ -n "$old" ] && GIT_DIR=$G git prune --expire=now >/dev/null 2>&1
  echo "taken $commit"
  ;;
undo)
  prev=$(GIT_DIR=$G git rev-parse -q --verify refs/firepit/previous) || { echo none; exit 0; }
  GIT_DIR=$G git update-ref refs/firepit/baseline "$prev" && echo undone
  ;;
diff)
  dir=$1; max=$2; since=${3:-checkpoint}
  cd -- "$dir" 2>/dev/null || { echo nodir; exit 0; }
  repo_top=$(git rev-parse --show-toplevel 2>/dev/null) || repo_top=
  top=${repo_top:-$(pwd -P)}
  why=
  root=
  for r in $roots; do
    case "$top/" in "$r"/*) root=$r ;; esac
  done
  # The baselines there are (`have`): the start, and the last checkpoint's
  # where it is another; `bwhy` says why SINCE could not be had.
  last=$(GIT_DIR=$G git rev-parse -q --verify 'refs/firepit/baseline^{commit}' 2>/dev/null) || last=
  start=$(GIT_DIR=$G git rev-parse -q --verify 'refs/firepit/start^{commit}' 2>/dev/null) || start=
  if [ -z "$start" ] && [ -n "$last" ] && [ "$(GIT_DIR=$G git log -1 --format=%s "$last")" = start ]; then
    start=$last
  fi
  have=
  [ -n "$start" ] && have=start
  [ -n "$last" ] && [ "$last" != "$start" ] && have="${have:+$have }checkpoint"
  base=${last:-$start}; bwhy=
  if [ "$since" = start ]; then
    if [ -n "$start" ]; then base=$start; else bwhy=nostart; fi
  fi
  [ -n "$base" ] || why=nobase
  [ -n "$base" ] && [ -z "$root" ] && why=outside
  if [ -z "$why" ]; then
    # Under the private dir, where the next view finds what a killed one
    # (past its timeout) left.
    find "$G" -maxdepth 1 -name 'view.*' -mmin +10 -exec rm -rf -- {} + 2>/dev/null
    tmp=$(mktemp -d "$G/view.XXXXXX") || exit 1
    trap 'rm -rf -- "$tmp"' EXIT
    mkdir -- "$tmp/objects" "$tmp/idx" || exit 1
    export GIT_OBJECT_DIRECTORY="$tmp/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$G/objects"
    now=$(snapshot "$G/idx" "$tmp/idx" "$root") || exit 1
    label=$(GIT_DIR=$G git log -1 --format='%ct %s' "$base" | head -c 300 | tr -d '\000\n')
    rel=${top#/}
    new=$(GIT_DIR=$G git diff --name-only -z -M --diff-filter=A "$base" "$now" -- "$rel" | tr -cd '\000' | wc -c)
    printf 'base\000%s\000%s\000%s\000%s\000%s\000' "$top" "$label" "$new" "$have" "$bwhy"
    GIT_DIR=$G git -c core.quotepath=off diff --no-color --no-ext-diff --no-textconv -M \
      --diff-filter=a --relative="$rel" "$base" "$now" -- "$rel"
    GIT_DIR=$G git diff --name-only -z -M --diff-filter=A "$base" "$now" -- "$rel" | head -z -n "$max" |
      xargs -0 -r env GIT_DIR="$G" git -c core.quotepath=off diff --no-color --no-ext-diff --no-textconv \
        --relative="$rel" "$base" "$now" --
    exit 0
  fi
  [ -n "$repo_top" ] || { echo "norepo $why"; exit 0; }
  cd -- "$repo_top" || exit 1
  head=$(git rev-parse -q --verify HEAD 2>/dev/null) || head=
  hbase=${head:-$(git hash-object -t tree /dev/null)}
  new=$(git ls-files -z --others --exclude-standard | tr -cd '\000' | wc -c)
  printf 'repo\000%s\000%s\000%s\000%s\000' "$repo_top" "$head" "$new" "$why"
  git -c core.quotepath=off diff --no-color --no-ext-diff --no-textconv -M "$hbase" --
  git ls-files -z --others --exclude-standard | head -z -n "$max" |
    xargs -0 -r -n 1 git -c core.quotepath=off diff --no-color --no-ext-diff --no-index -- /dev/null
  ;;
*)
  echo "unknown operation" >&2; exit 2
  ;;
esac
exit 0
