# git does not store xattrs; needs setfattr (Debian package attr)
setfattr -n user.comment -v hello x/file
setfattr -n user.dir -v on x
mkdir x/sub
echo n > x/sub/nested
setfattr -n user.sub -v dir x/sub
setfattr -n user.multi -v 1 x/sub/nested
setfattr -n user.other -v 2 x/sub/nested
