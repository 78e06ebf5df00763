/* Offset of vcpu's loop-flag word (vcpu::loop_word()) in a freestanding build, for SVM's
 * switch.S, which tests it after each handler; vcpu.cpp static_asserts it. */
#define HV_VCPU_LOOP_WORD 0xb80
