#include "libhv/dev/pic8259.hpp"

namespace hv::dev {

namespace {
// IRQ0/1/2 and IRQ8/13 are always edge-triggered on the PC chipset.
constexpr std::uint8_t elcr_writable[2] = {0xf8, 0xde};
constexpr unsigned cascade_irq = 2;
} // namespace

std::uint8_t pic_chip::level_mask() const {
    if (ltim_) return 0xff;
    return static_cast<std::uint8_t>(elcr_ | (master_ ? 1u << cascade_irq : 0u));
}

void pic_chip::refresh_levels() {
    std::uint8_t lm = level_mask();
    irr_ = static_cast<std::uint8_t>((irr_ & ~lm) | (lines_ & lm));
}

void pic_chip::set_input(unsigned irq, bool level) {
    std::uint8_t bit = static_cast<std::uint8_t>(1u << irq);
    bool was = lines_ & bit;
    lines_ = static_cast<std::uint8_t>(level ? lines_ | bit : lines_ & ~bit);
    if (level_mask() & bit) {
        irr_ = static_cast<std::uint8_t>(level ? irr_ | bit : irr_ & ~bit);
    } else if (level && !was) {
        irr_ |= bit;
    }
}

std::optional<unsigned> pic_chip::highest_in_service() const {
    std::uint8_t in = special_mask_ ? static_cast<std::uint8_t>(isr_ & ~imr_) : isr_;
    for (unsigned p = 0; p < 8; ++p) {
        unsigned irq = (lowest_ + 1 + p) & 7;
        if (in & (1u << irq)) return irq;
    }
    return std::nullopt;
}

std::optional<unsigned> pic_chip::pending_irq() const {
    std::uint8_t req = static_cast<std::uint8_t>(irr_ & ~imr_);
    if (special_mask_) req &= static_cast<std::uint8_t>(~isr_);
    if (!req) return std::nullopt;
    unsigned best = 8;
    for (unsigned p = 0; p < 8; ++p) {
        unsigned irq = (lowest_ + 1 + p) & 7;
        if (req & (1u << irq)) { best = irq; break; }
    }
    auto in = highest_in_service();
    if (!in) return best;
    if (priority(best) < priority(*in)) return best;
    // Special fully nested mode: a cascade input in service still lets its slave
    // interrupt with a higher priority through.
    if (sfnm_ && master_ && best == *in && (icw3_ & (1u << best))) return best;
    return std::nullopt;
}

void pic_chip::ack(unsigned irq) {
    std::uint8_t bit = static_cast<std::uint8_t>(1u << irq);
    if (!auto_eoi_) isr_ |= bit;
    else if (rotate_on_aeoi_) lowest_ = static_cast<std::uint8_t>(irq);
    if (!(level_mask() & bit)) irr_ &= static_cast<std::uint8_t>(~bit);
}

std::uint8_t pic_chip::poll() {
    auto irq = pending_irq();
    if (!irq) return 0;
    ack(*irq);
    return static_cast<std::uint8_t>(0x80 | *irq);
}

void pic_chip::eoi_irq(unsigned irq, bool rotate) {
    isr_ &= static_cast<std::uint8_t>(~(1u << irq));
    if (rotate) lowest_ = static_cast<std::uint8_t>(irq);
}

void pic_chip::icw1(std::uint8_t v) {
    init_step_ = 2;
    need_icw4_ = v & 0x01;
    single_ = v & 0x02;
    ltim_ = v & 0x08;
    imr_ = 0;
    isr_ = 0;
    irr_ = 0;       // edge sense reset: a line already high must fall and rise again
    lowest_ = 7;
    special_mask_ = false;
    read_isr_ = false;
    poll_ = false;
    rotate_on_aeoi_ = false;
    if (!need_icw4_) { auto_eoi_ = false; sfnm_ = false; }
    refresh_levels();
}

void pic_chip::ocw2(std::uint8_t v) {
    unsigned level = v & 7;
    switch (v >> 5) {
    case 1:     // non-specific EOI
    case 5:     // rotate on non-specific EOI
        if (auto in = highest_in_service(); in) eoi_irq(*in, (v >> 5) == 5);
        else if (isr_) {    // special mask mode hid every in-service level
            for (unsigned p = 0; p < 8; ++p) {
                unsigned irq = (lowest_ + 1 + p) & 7;
                if (isr_ & (1u << irq)) { eoi_irq(irq, (v >> 5) == 5); break; }
            }
        }
        break;
    case 3: eoi_irq(level, false); break;   // specific EOI
    case 7: eoi_irq(level, true); break;    // rotate on specific EOI
    case 4: rotate_on_aeoi_ = true; break;
    case 0: rotate_on_aeoi_ = false; break;
    case 6: lowest_ = static_cast<std::uint8_t>(level); break;   // set priority
    default: break;                          // 2: no operation
    }
}

void pic_chip::ocw3(std::uint8_t v) {
    if (v & 0x40) special_mask_ = v & 0x20;
    if (v & 0x04) poll_ = true;
    if (v & 0x02) read_isr_ = v & 0x01;
}

std::uint64_t pic_chip::read(std::uint64_t offset, unsigned) {
    std::uint8_t v;
    if (poll_) {
        poll_ = false;
        v = poll();
    } else if ((offset & 1) == 0) {
        v = read_isr_ ? isr_ : irr_;
    } else {
        v = imr_;
    }
    pair_->update();
    return v;
}

void pic_chip::write(std::uint64_t offset, unsigned, std::uint64_t value) {
    auto v = static_cast<std::uint8_t>(value);
    if ((offset & 1) == 0) {
        if (v & 0x10) icw1(v);
        else if (v & 0x08) ocw3(v);
        else ocw2(v);
    } else {
        switch (init_step_) {
        case 2:
            vector_base_ = v & 0xf8;
            init_step_ = single_ ? (need_icw4_ ? 4 : 0) : 3;
            break;
        case 3:
            icw3_ = v;
            init_step_ = need_icw4_ ? 4 : 0;
            break;
        case 4:
            auto_eoi_ = v & 0x02;
            sfnm_ = v & 0x10;
            init_step_ = 0;
            break;
        default:
            imr_ = v;
            break;
        }
    }
    pair_->update();
}

pic_pair::pic_pair() {
    chips_[0].pair_ = this;
    chips_[0].master_ = true;
    chips_[1].pair_ = this;
}

void pic_pair::set_irq(unsigned irq, bool level) {
    if (irq >= 16) return;
    if (irq == cascade_irq) irq = 9;    // the ISA IRQ2 pin is wired to IRQ9
    if (irq < 8) chips_[0].set_input(irq, level);
    else chips_[1].set_input(irq - 8, level);
    update();
}

void pic_pair::update() {
    chips_[0].set_input(cascade_irq, chips_[1].output());
    bool out = chips_[0].output();
    if (out != intr_) {
        intr_ = out;
        on_intr_(out);
    }
}

std::optional<std::uint8_t> pic_pair::pending() const {
    auto m = chips_[0].pending_irq();
    if (!m) return std::nullopt;
    if (*m != cascade_irq) return static_cast<std::uint8_t>(chips_[0].vector_base_ | *m);
    auto s = chips_[1].pending_irq();
    return static_cast<std::uint8_t>(chips_[1].vector_base_ | (s ? *s : 7));
}

std::uint8_t pic_pair::acknowledge() {
    pic_chip& m = chips_[0];
    pic_chip& s = chips_[1];
    std::uint8_t vec;
    if (auto irq = m.pending_irq(); !irq) {
        vec = static_cast<std::uint8_t>(m.vector_base_ | 7);     // spurious, nothing in service
    } else if (*irq != cascade_irq) {
        m.ack(*irq);
        vec = static_cast<std::uint8_t>(m.vector_base_ | *irq);
    } else {
        m.ack(*irq);
        if (auto sirq = s.pending_irq(); sirq) {
            s.ack(*sirq);
            vec = static_cast<std::uint8_t>(s.vector_base_ | *sirq);
        } else {
            vec = static_cast<std::uint8_t>(s.vector_base_ | 7);
        }
    }
    update();
    return vec;
}

std::uint16_t pic_pair::elcr_value() const {
    return static_cast<std::uint16_t>(chips_[0].elcr_ | (chips_[1].elcr_ << 8));
}

void pic_pair::set_elcr(std::uint16_t v) {
    chips_[0].elcr_ = static_cast<std::uint8_t>(v & elcr_writable[0]);
    chips_[1].elcr_ = static_cast<std::uint8_t>((v >> 8) & elcr_writable[1]);
    chips_[0].refresh_levels();
    chips_[1].refresh_levels();
    update();
}

std::uint64_t pic_pair::elcr_port::read(std::uint64_t offset, unsigned) {
    return offset == 0 ? pair_.chips_[0].elcr_ : offset == 1 ? pair_.chips_[1].elcr_ : 0xff;
}

void pic_pair::elcr_port::write(std::uint64_t offset, unsigned, std::uint64_t value) {
    if (offset > 1) return;
    std::uint16_t cur = pair_.elcr_value();
    if (offset == 0) cur = static_cast<std::uint16_t>((cur & 0xff00) | (value & 0xff));
    else cur = static_cast<std::uint16_t>((cur & 0x00ff) | ((value & 0xff) << 8));
    pair_.set_elcr(cur);
}

} // namespace hv::dev
