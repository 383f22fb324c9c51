# git does not store xattrs; needs setfattr (Debian package attr)
setfattr -n user.comment -v hello x/file
setfattr -n user.dir -v on x
