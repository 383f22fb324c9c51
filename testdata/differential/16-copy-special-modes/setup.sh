# git keeps only 0644/0755
mkdir -p modes && cd modes
echo s > suid && chmod 4755 suid
echo g > sgid && chmod 2755 sgid
echo p > private && chmod 0600 private
echo r > readonly && chmod 0444 readonly
mkdir sticky && chmod 1777 sticky
mkdir sgid-dir && chmod 2770 sgid-dir
mkdir closed && chmod 0700 closed
