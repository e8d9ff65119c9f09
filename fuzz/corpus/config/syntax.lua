return {
  services = {
