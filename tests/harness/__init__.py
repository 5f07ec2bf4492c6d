"""The test harness: what the tests need that the product does not (an arm64 root filesystem
under qemu-user, cross compilers, the PyTorch source tree, Debian's torch builds, qemu with
TCG plugins). It may import the product (recipe/); the product never imports it."""
