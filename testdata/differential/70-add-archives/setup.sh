# archives are made here so that their bytes need not be in git
mkdir -p t/existing t/new && echo from-tar > t/existing/added && echo n > t/new/n && chmod 0751 t/new
tar --owner=3 --group=4 -C t -cf layer.tar .
tar --owner=0 --group=0 -C t -cjf layer.tar.bz2 .
tar --owner=0 --group=0 -C t -cJf layer.tar.xz .
printf 'not gzip data' > notatar.gz
rm -rf t
