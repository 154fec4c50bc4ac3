/* SPDX-License-Identifier: MIT */
/* Intrusive doubly-linked lists: the item struct has `prev` and `next` pointers of its own type
 * and the owner keeps a head pointer. O(1) insertion at the head and O(1) removal. */
#pragma once

#define LIST_PREPEND(head, item)                                  \
        do {                                                      \
                __typeof__(item) _i_ = (item);                    \
                _i_->prev = NULL;                                 \
                _i_->next = (head);                               \
                if ((head))                                       \
                        (head)->prev = _i_;                       \
                (head) = _i_;                                     \
        } while (0)

/* Unlinks item from the list headed by head; a no-op for an item in no list. */
#define LIST_REMOVE(head, item)                                   \
        do {                                                      \
                __typeof__(item) _i_ = (item);                    \
                if (_i_->prev)                                    \
                        _i_->prev->next = _i_->next;              \
                else if ((head) == _i_)                           \
                        (head) = _i_->next;                       \
                if (_i_->next)                                    \
                        _i_->next->prev = _i_->prev;              \
                _i_->prev = _i_->next = NULL;                     \
        } while (0)
