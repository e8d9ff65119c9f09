#!/bin/sh
# Renders the page with this container's hostname, then runs nginx.
set -e
mkdir -p /var/www/site
sed "s/@INSTANCE@/$(hostname)/" /usr/share/moongate-web/index.html.in > /var/www/site/index.html
exec nginx -g 'daemon off;'
