#!/usr/bin/env bash
# Builds the Java client with plain javac against Debian's jars (apt: libokhttp-java,
# libgoogle-gson-java; okhttp 3.13 needs only okio 1.x besides itself, no Kotlin).
# Usage: clients/java/build.sh [OUT_DIR]   -> OUT_DIR/img3d-client.jar (default clients/java/build)
# Prints the runtime classpath on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
jars=/usr/share/java
deps="$jars/okhttp.jar:$jars/okio.jar:$jars/gson.jar"
for j in okhttp okio gson; do
  [ -f "$jars/$j.jar" ] || { echo "build.sh: $jars/$j.jar missing: apt-get install libokhttp-java libgoogle-gson-java" >&2; exit 1; }
done
rm -rf "$out/classes"
mkdir -p "$out/classes"
javac --release 11 -Xlint:all -Werror -d "$out/classes" -cp "$deps" $(find "$here/src/main/java" -name '*.java')
jar --create --file "$out/img3d-client.jar" --main-class io.img3d.client.Img3dCli -C "$out/classes" .
echo "$out/img3d-client.jar:$deps"
