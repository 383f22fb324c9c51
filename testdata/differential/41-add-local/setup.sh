# archives are made here so that their bytes need not be in git
mkdir -p payload/sub && echo p > payload/sub/p && echo q > payload/q && chmod 0600 payload/q
ln -s q payload/qlink
tar --owner=1234 --group=5678 -cf archive.tar payload
tar --owner=0 --group=0 -czf archive.tar.gz payload
rm -rf payload
