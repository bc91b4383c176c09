# Prints a variable of the Makefile as written there (unexpanded), for test/sanitize/run.sh, which
# extends the Makefile's PG_CXXFLAGS and SHLIB_LINK instead of copying them:
#     make -s -f Makefile -f test/sanitize/printvar.mk print-PG_CXXFLAGS
print-%:
	@printf '%s\n' '$(value $*)'
