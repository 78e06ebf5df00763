// The PC's cascaded 8259A pair: master at 0x20/0x21 (IRQ0-7), slave at 0xa0/0xa1
// (IRQ8-15) on the master's IR2, and the chipset's ELCR at 0x4d0/0x4d1.
//
// Edge-triggered inputs latch a rising edge in IRR (as the chipset's edge detector
// does, so a pulse is not lost); level-triggered ones (ELCR, or ICW1.LTIM) follow the
// line. The master's cascade input follows the slave's INT output as a level.
#pragma once
#include <cstdint>
#include <optional>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/irq.hpp"

namespace hv::dev {

class pic_pair;

class pic_chip final : public io_device {
public:
    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] std::uint8_t irr() const { return irr_; }
    [[nodiscard]] std::uint8_t isr() const { return isr_; }
    [[nodiscard]] std::uint8_t imr() const { return imr_; }
    [[nodiscard]] std::uint8_t vector_base() const { return vector_base_; }
    [[nodiscard]] bool auto_eoi() const { return auto_eoi_; }
    // Highest-priority request that may interrupt now, if any (no side effects).
    [[nodiscard]] std::optional<unsigned> pending_irq() const;
    // INT output.
    [[nodiscard]] bool output() const { return pending_irq().has_value(); }

private:
    friend class pic_pair;
    void set_input(unsigned irq, bool level);
    void refresh_levels();
    void ack(unsigned irq);
    void icw1(std::uint8_t v);
    void ocw2(std::uint8_t v);
    void ocw3(std::uint8_t v);
    void eoi_irq(unsigned irq, bool rotate);
    std::optional<unsigned> highest_in_service() const;
    unsigned priority(unsigned irq) const { return (irq - lowest_ - 1) & 7; }   // 0 = highest
    std::uint8_t level_mask() const;
    std::uint8_t poll();

    pic_pair* pair_ = nullptr;
    bool master_ = false;
    std::uint8_t irr_ = 0, isr_ = 0, imr_ = 0xff;
    std::uint8_t lines_ = 0;          // input levels
    std::uint8_t elcr_ = 0;
    std::uint8_t vector_base_ = 0;
    std::uint8_t icw3_ = 0;
    std::uint8_t lowest_ = 7;         // the IR with the lowest priority
    std::uint8_t init_step_ = 0;      // 0: operational; 2,3,4: expecting that ICW
    bool need_icw4_ = false, single_ = false, ltim_ = false;
    bool auto_eoi_ = false, rotate_on_aeoi_ = false, sfnm_ = false;
    bool special_mask_ = false, read_isr_ = false, poll_ = false;
};

class pic_pair final : public irq_sink, public ext_int_source {
public:
    pic_pair();
    pic_pair(const pic_pair&) = delete;
    pic_pair& operator=(const pic_pair&) = delete;

    // Map: master at 0x20, slave at 0xa0, elcr at 0x4d0 (each 2 ports).
    pic_chip& master() { return chips_[0]; }
    pic_chip& slave() { return chips_[1]; }
    io_device& elcr() { return elcr_; }

    // IRQ 0-15 (2 is the cascade and has no pin of its own).
    void set_irq(unsigned irq, bool level) override;
    [[nodiscard]] std::optional<std::uint8_t> pending() const override;
    std::uint8_t acknowledge() override;
    [[nodiscard]] bool intr() const { return intr_; }

    // Called with the new INTR level whenever it changes (to kick the vCPU).
    void on_intr(callback<bool> cb) { on_intr_ = cb; }
    // The ELCR as one 16-bit value (bit n = IRQ n level-triggered).
    [[nodiscard]] std::uint16_t elcr_value() const;
    void set_elcr(std::uint16_t v);

private:
    friend class pic_chip;
    class elcr_port final : public io_device {
    public:
        explicit elcr_port(pic_pair& p) : pair_{p} {}
        std::uint64_t read(std::uint64_t offset, unsigned size) override;
        void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;
    private:
        pic_pair& pair_;
    };
    void update();

    pic_chip chips_[2];
    elcr_port elcr_{*this};
    bool intr_ = false;
    callback<bool> on_intr_{};
};

} // namespace hv::dev
