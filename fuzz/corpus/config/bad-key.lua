return {
  servics = {},
}
