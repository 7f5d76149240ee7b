# Helpers the benchmarks share; sourced, not run.

# unthrottled_rules WARDEN OUT: the shipped gateway rules without their `throttle` blocks, so a
# benchmark that sends every request from one address measures the endpoint, not the limit.
unthrottled_rules() {
  "$1" gateway shipped-rules | awk '
    /^    throttle:$/ { skipping = 1; next }
    skipping && /^      / { next }
    { skipping = 0; print }
  ' >"$2"
  # A limit written another way than the shipped file's would survive the cut: refuse to go on.
  if grep -q '^[^#]*throttle' "$2"; then echo "unthrottled_rules: a throttle is left in $2" >&2; return 1; fi
  "$1" gateway check-rules "$2" >/dev/null
}
